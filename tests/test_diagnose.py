"""Naming the cause of an answer from the log lines Nginx and PHP-FPM wrote."""

from __future__ import annotations

import pytest

from labkit import Cause
from labkit.diagnose import classify, explain, is_explained

# Captured on the lab: Nginx as www-data, socket shut to it; then fastcgi_pass at a missing file.
PERMISSION_DENIED = (
    "2026/12/04 15:28:40 [crit] 7#7: *4 connect() to unix:/run/php/php8.2-fpm.sock failed "
    "(13: Permission denied) while connecting to upstream, client: 172.19.0.1, server: _, "
    'request: "GET /whoami.php HTTP/1.1", upstream: "fastcgi://unix:/run/php/php8.2-fpm.sock:", '
    'host: "localhost"'
)
SOCKET_MISSING = (
    "2026/12/04 15:28:40 [crit] 34#34: *11 connect() to unix:/run/php/nope.sock failed "
    "(2: No such file or directory) while connecting to upstream, client: 172.19.0.1, server: _, "
    'request: "GET /whoami.php HTTP/1.1", upstream: "fastcgi://unix:/run/php/nope.sock:", '
    'host: "localhost"'
)
# From /work/shared/field-cases/cases.md, as the reports quote them.
R09_CONNECTION_REFUSED = (
    "*6 connect() failed (111: Connection refused) while connecting to upstream, "
    'client: 172.17.0.1, server: localhost, request: "GET / HTTP/1.1", '
    'upstream: "fastcgi://127.0.0.1:9000", host: "localhost:8000"'
)
R18_UPSTREAM_TIMED_OUT = (
    "[error] \u2026 upstream timed out (110: Connection timed out) while reading response header "
    'from upstream, client: 192.0.2.10, server: example.test, request: "GET /mail/ HTTP/1.1", '
    'upstream: "fastcgi://unix:/var/run/php5-fpm.sock", host: "example.test"'
)
R18_MAX_CHILDREN = (
    "WARNING: [pool www] server reached pm.max_children setting (8), consider raising it"
)
R14_CLIENT_DROPPED = (
    "WARNING: [pool www] Connection disallowed: IP address '192.0.2.50' has been dropped."
)
R03_ERROR_PAGE_MISSING = (
    'open() "/srv/app/html/error/50x.html" failed (2: No such file or directory)'
)
# Written in Nginx's error-log format (not captured): what Nginx sees when PHP-FPM drops a client.
PREMATURELY_CLOSED = (
    "2026/12/04 15:30:02 [error] 7#7: *9 upstream prematurely closed connection while reading "
    'response header from upstream, client: 172.19.0.1, server: _, request: "GET /whoami.php '
    'HTTP/1.1", upstream: "fastcgi://192.0.2.50:9000", host: "localhost"'
)
CONNECTION_RESET = (
    "2026/12/04 15:30:02 [error] 7#7: *9 recv() failed (104: Connection reset by peer) while "
    'reading response header from upstream, client: 172.19.0.1, server: _, request: "GET '
    '/whoami.php HTTP/1.1", upstream: "fastcgi://192.0.2.50:9000", host: "localhost"'
)
PRIMARY_SCRIPT_UNKNOWN = (
    '2026/12/04 15:31:10 [error] 7#7: *12 FastCGI sent in stderr: "Primary script unknown" '
    "while reading response header from upstream, client: 172.19.0.1, server: _, "
    'request: "GET /missing.php HTTP/1.1", upstream: "fastcgi://unix:/run/php/php8.2-fpm.sock:", '
    'host: "localhost"'
)


@pytest.mark.parametrize(
    ("status", "nginx_lines", "fpm_lines", "cause"),
    [
        pytest.param(502, [PERMISSION_DENIED], [], Cause.SOCKET_PERMISSION_DENIED, id="lab-13"),
        pytest.param(502, [SOCKET_MISSING], [], Cause.SOCKET_MISSING, id="lab-2"),
        pytest.param(502, [R09_CONNECTION_REFUSED], [], Cause.CONNECTION_REFUSED, id="R09-111"),
        pytest.param(
            504,
            [R18_UPSTREAM_TIMED_OUT],
            [R18_MAX_CHILDREN],
            Cause.UPSTREAM_TIMEOUT,
            id="R18-timed-out",
        ),
        pytest.param(502, [], [R14_CLIENT_DROPPED], Cause.CLIENT_NOT_ALLOWED, id="R14-dropped"),
        pytest.param(
            404,
            [PERMISSION_DENIED.replace("/whoami.php", "/fpm-ping"), R03_ERROR_PAGE_MISSING],
            [],
            Cause.SOCKET_PERMISSION_DENIED,
            id="R03-404-from-missing-error-page",
        ),
        pytest.param(502, [PREMATURELY_CLOSED], [], Cause.UPSTREAM_CLOSED, id="closed"),
        pytest.param(502, [CONNECTION_RESET], [], Cause.UPSTREAM_CLOSED, id="reset"),
        pytest.param(404, [PRIMARY_SCRIPT_UNKNOWN], [], Cause.SCRIPT_NOT_FOUND, id="no-script"),
    ],
)
def test_classify_names_the_cause_the_logs_show(
    status: int, nginx_lines: list[str], fpm_lines: list[str], cause: Cause
) -> None:
    assert classify(status, nginx_lines, fpm_lines) == cause
    assert is_explained(status, nginx_lines, fpm_lines)


@pytest.mark.parametrize(
    "nginx_line",
    [
        pytest.param(PREMATURELY_CLOSED, id="prematurely-closed"),
        pytest.param(CONNECTION_RESET, id="connection-reset"),
    ],
)
def test_classify_prefers_php_fpm_drop_over_nginx_closed_connection(nginx_line: str) -> None:
    assert classify(502, [nginx_line], [R14_CLIENT_DROPPED]) == Cause.CLIENT_NOT_ALLOWED


@pytest.mark.parametrize(
    ("status", "nginx_lines"),
    [
        pytest.param(200, [], id="200-no-lines"),
        pytest.param(200, [PERMISSION_DENIED], id="200-despite-error-line"),
        pytest.param(200, [R09_CONNECTION_REFUSED, SOCKET_MISSING], id="200-despite-two-lines"),
        pytest.param(304, [SOCKET_MISSING], id="304-not-modified"),
    ],
)
def test_classify_reports_ok_when_status_is_success(status: int, nginx_lines: list[str]) -> None:
    assert classify(status, nginx_lines, [R14_CLIENT_DROPPED]) == Cause.OK


def test_classify_reports_unknown_when_502_has_no_lines() -> None:
    assert classify(502, [], []) == Cause.UNKNOWN
    assert not is_explained(502, [], [])


def test_classify_reports_unknown_when_lines_explain_nothing() -> None:
    assert classify(502, [R03_ERROR_PAGE_MISSING], [R18_MAX_CHILDREN]) == Cause.UNKNOWN


def test_classify_reports_not_found_when_404_has_no_lines() -> None:
    assert classify(404, [], []) == Cause.NOT_FOUND
    assert not is_explained(404, [], [])


def test_classify_reports_php_error_when_500_has_no_lines() -> None:
    assert classify(500, [], []) == Cause.PHP_ERROR


@pytest.mark.parametrize("cause", list(Cause), ids=str)
def test_explain_gives_a_sentence_for_every_cause(cause: Cause) -> None:
    text = explain(cause)

    assert text[0].isupper()
    assert text.endswith(".")
    assert len(text.split()) >= 4


def test_explain_gives_each_cause_its_own_sentence() -> None:
    texts = [explain(cause) for cause in Cause]

    assert len(set(texts)) == len(texts)


def test_cause_prints_as_its_value() -> None:
    assert str(Cause.SOCKET_PERMISSION_DENIED) == "socket-permission-denied"


def test_http_server_behind_fastcgi_pass_is_not_fastcgi() -> None:
    # Seen on the lab with fastcgi_pass 127.0.0.1:80 (Nginx's own HTTP port) in pod.
    line = (
        "2026/12/04 17:01:02 [error] 7#7: *3 upstream sent unsupported FastCGI protocol "
        "version: 72 while reading response header from upstream, client: 172.17.0.1, "
        'server: _, request: "GET /whoami.php HTTP/1.1", upstream: "fastcgi://127.0.0.1:80", '
        'host: "localhost"'
    )

    assert classify(502, [line], []) is Cause.NOT_FASTCGI
