"""Explain an HTTP outcome from the log lines Nginx and PHP-FPM wrote for it.

A cause is read from what the servers logged, never guessed from the settings: the same
502 can come from a permission, a missing file, a refused connection or a dropped client, and
only the logs tell them apart.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence


class Cause(enum.StrEnum):
    """Why a request got the answer it got."""

    OK = "ok"
    SOCKET_PERMISSION_DENIED = "socket-permission-denied"
    SOCKET_MISSING = "socket-missing"
    CONNECTION_REFUSED = "connection-refused"
    CLIENT_NOT_ALLOWED = "client-not-allowed"
    UPSTREAM_TIMEOUT = "upstream-timeout"
    UPSTREAM_CLOSED = "upstream-closed"
    HOST_UNREACHABLE = "host-unreachable"
    NOT_FASTCGI = "not-fastcgi"
    SCRIPT_NOT_FOUND = "script-not-found"
    NOT_FOUND = "not-found"
    PHP_ERROR = "php-error"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


EXPLANATIONS = {
    Cause.OK: "PHP-FPM answered through Nginx.",
    Cause.SOCKET_PERMISSION_DENIED: (
        "Nginx's worker may not write to the socket file: its owner, group and mode shut the "
        "worker's account out (connect() failed, 13: Permission denied)."
    ),
    Cause.SOCKET_MISSING: (
        "No socket file exists at the path in fastcgi_pass (connect() failed, "
        "2: No such file or directory): the pool listens elsewhere, or is not running."
    ),
    Cause.CONNECTION_REFUSED: (
        "Nothing accepts connections at the address Nginx dialled (111: Connection refused): "
        "PHP-FPM listens on another address, port or interface, or is not running."
    ),
    Cause.CLIENT_NOT_ALLOWED: (
        "PHP-FPM accepted the connection and dropped it at once, because Nginx's address is "
        "not in listen.allowed_clients."
    ),
    Cause.UPSTREAM_TIMEOUT: (
        "Nginx connected, but no response came within its timeout: the connection waited in "
        "the socket's queue because every worker was busy, or the script was too slow."
    ),
    Cause.UPSTREAM_CLOSED: "PHP-FPM closed the connection before sending a response.",
    Cause.HOST_UNREACHABLE: "Nginx found no route to the PHP-FPM host.",
    Cause.NOT_FASTCGI: (
        "Something answered at that address, but not in FastCGI: fastcgi_pass points at "
        "another kind of server (an HTTP port, say)."
    ),
    Cause.SCRIPT_NOT_FOUND: "PHP-FPM ran, but found no script at SCRIPT_FILENAME.",
    Cause.NOT_FOUND: "Nginx found no such file to serve or pass on.",
    Cause.PHP_ERROR: "PHP-FPM ran the script and it failed.",
    Cause.UNKNOWN: "No log line explains this answer.",
}

_FPM_RULES: tuple[tuple[re.Pattern[str], Cause], ...] = (
    (
        re.compile(r"Connection disallowed: IP address '[^']*' has been dropped"),
        Cause.CLIENT_NOT_ALLOWED,
    ),
    (re.compile(r"Primary script unknown"), Cause.SCRIPT_NOT_FOUND),
)
_NGINX_RULES: tuple[tuple[re.Pattern[str], Cause], ...] = (
    (
        re.compile(r"\(13: Permission denied\) while connecting to upstream"),
        Cause.SOCKET_PERMISSION_DENIED,
    ),
    (
        re.compile(r"\(2: No such file or directory\) while connecting to upstream"),
        Cause.SOCKET_MISSING,
    ),
    (
        re.compile(r"\(111: Connection refused\) while connecting to upstream"),
        Cause.CONNECTION_REFUSED,
    ),
    (re.compile(r"upstream timed out"), Cause.UPSTREAM_TIMEOUT),
    (
        re.compile(r"\(11[03]: (No route to host|Connection timed out)\) while connecting"),
        Cause.HOST_UNREACHABLE,
    ),
    (re.compile(r"Primary script unknown"), Cause.SCRIPT_NOT_FOUND),
    (re.compile(r"upstream sent unsupported FastCGI protocol version"), Cause.NOT_FASTCGI),
    (re.compile(r"(prematurely closed|104: Connection reset by peer)"), Cause.UPSTREAM_CLOSED),
)


def classify(status: int, nginx_lines: Sequence[str], fpm_lines: Sequence[str]) -> Cause:
    """Name the cause of one response from its status and the log lines it caused.

    PHP-FPM's own lines win over Nginx's: when PHP-FPM drops a client that
    `listen.allowed_clients` does not list, Nginx only sees the connection close.

    Args:
        status: The HTTP status Nginx returned.
        nginx_lines: Nginx error-log lines written for this request.
        fpm_lines: PHP-FPM log lines written for this request.

    Returns:
        The cause; `Cause.UNKNOWN` when an error status has no explaining line.
    """
    if 200 <= status < 400:
        return Cause.OK
    for rules, lines in ((_FPM_RULES, fpm_lines), (_NGINX_RULES, nginx_lines)):
        for pattern, cause in rules:
            if any(pattern.search(line) for line in lines):
                return cause
    if status == 404:
        return Cause.NOT_FOUND
    if status == 500:
        return Cause.PHP_ERROR
    return Cause.UNKNOWN


def explain(cause: Cause) -> str:
    """Return one plain sentence a learner can read about `cause`."""
    return EXPLANATIONS[cause]


def is_explained(status: int, nginx_lines: Sequence[str], fpm_lines: Sequence[str]) -> bool:
    """Tell whether the logs already hold a line that explains an error status."""
    return classify(status, nginx_lines, fpm_lines) not in (
        Cause.UNKNOWN,
        Cause.NOT_FOUND,
        Cause.PHP_ERROR,
    )
