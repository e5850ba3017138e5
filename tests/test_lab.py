"""The live lab against a real Docker engine, real Nginx and real PHP-FPM.

Every case asserts the HTTP status and the cause the lab read from the servers' own logs.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from labkit import ApplyFailed, Cause, ConfigError, ConfigRejected, Lab
from labkit.cli import main as cli_main
from labkit.config import DEFAULT_SOCKET, IMAGE_GROUPS, IMAGE_USERS

pytestmark = pytest.mark.engine

MakeLab = Callable[..., Lab]
BOTH = pytest.mark.parametrize("topology", ["pod", "network"])


def started_at(lab: Lab, role: str) -> str:
    containers = lab.status()["containers"]
    assert isinstance(containers, dict)
    return str(containers[role]["started_at"])


@BOTH
def test_default_unix_socket_gives_200(make_lab: MakeLab, topology: str) -> None:
    lab = make_lab(topology)

    outcome = lab.request("/whoami.php")

    assert (outcome.status, outcome.cause) == (200, Cause.OK)
    assert "user=www-data" in outcome.body
    assert "pool=www" in outcome.body
    assert "sapi=fpm-fcgi" in outcome.body
    assert outcome.socket is not None
    assert (outcome.socket.owner, outcome.socket.group, outcome.socket.mode) == (
        "www-data",
        "www-data",
        "0660",
    )


@BOTH
def test_socket_owner_mismatch_gives_502_until_mode_0666(make_lab: MakeLab, topology: str) -> None:
    lab = make_lab(topology)

    lab.apply(pool={"listen.owner": "ubuntu", "listen.group": "ubuntu"})
    denied = lab.request()
    lab.apply(pool={"listen.mode": "0666"})
    opened = lab.request()

    assert (denied.status, denied.cause) == (502, Cause.SOCKET_PERMISSION_DENIED)
    assert any("(13: Permission denied)" in line for line in denied.nginx_log)
    assert denied.socket is not None and denied.socket.owner == "ubuntu"
    assert (opened.status, opened.cause) == (200, Cause.OK)
    assert opened.socket is not None and opened.socket.permissions == "srw-rw-rw-"


@BOTH
def test_fastcgi_pass_to_missing_socket_gives_socket_missing(
    make_lab: MakeLab, topology: str
) -> None:
    lab = make_lab(topology)

    lab.apply(nginx={"fastcgi_pass": "unix:/run/php/php7.4-fpm.sock"})
    outcome = lab.request()

    assert (outcome.status, outcome.cause) == (502, Cause.SOCKET_MISSING)
    assert outcome.socket is not None and not outcome.socket.exists


def test_tcp_loopback_with_allowed_clients_gives_200_in_pod(make_lab: MakeLab) -> None:
    lab = make_lab("pod")

    lab.apply(
        pool={"listen": "127.0.0.1:9000", "listen.allowed_clients": "127.0.0.1"},
        nginx={"fastcgi_pass": "127.0.0.1:9000"},
    )
    outcome = lab.request()

    assert (outcome.status, outcome.cause) == (200, Cause.OK)
    assert outcome.socket is None


def test_tcp_loopback_is_refused_across_containers(make_lab: MakeLab) -> None:
    lab = make_lab("network")

    lab.apply(
        pool={"listen": "127.0.0.1:9000", "listen.allowed_clients": "127.0.0.1"},
        nginx={"fastcgi_pass": "php:9000"},
    )
    outcome = lab.request()

    assert (outcome.status, outcome.cause) == (502, Cause.CONNECTION_REFUSED)
    assert any("(111: Connection refused)" in line for line in outcome.nginx_log)


def test_all_interfaces_with_loopback_only_client_list_drops_nginx(make_lab: MakeLab) -> None:
    lab = make_lab("network")

    lab.apply(
        pool={"listen": "9000", "listen.allowed_clients": "127.0.0.1"},
        nginx={"fastcgi_pass": "php:9000"},
    )
    outcome = lab.request()

    assert (outcome.status, outcome.cause) == (502, Cause.CLIENT_NOT_ALLOWED)
    assert any("Connection disallowed" in line for line in outcome.fpm_log)


@pytest.mark.parametrize(
    ("pool", "nginx"),
    [
        ({"listen.mode": "9999"}, None),
        ({"listen.owner": "www-data\nlisten = 0.0.0.0:9000"}, None),
        ({"listen": "unix:/run/php/php8.2-fpm.sock"}, None),
        (None, {"fastcgi_pass": "unix:/etc/passwd"}),
    ],
    ids=["mode-9999", "newline-injection", "nginx-prefix-in-pool", "path-outside-socket-dir"],
)
def test_invalid_value_is_refused_before_anything_restarts(
    make_lab: MakeLab, pool: dict[str, str] | None, nginx: dict[str, str] | None
) -> None:
    lab = make_lab("pod")
    before = {role: started_at(lab, role) for role in ("php", "nginx")}
    config = lab.config

    with pytest.raises(ConfigError) as refused:
        lab.apply(pool=pool, nginx=nginx)

    assert refused.value.field in {*(pool or {}), *(nginx or {})}
    assert lab.config == config
    assert {role: started_at(lab, role) for role in ("php", "nginx")} == before
    assert lab.request().status == 200


@pytest.mark.parametrize(
    ("pool", "nginx", "tool", "message"),
    [
        ({"no_such_directive": "1"}, None, "php-fpm", "unknown entry 'no_such_directive'"),
        (None, {"fastcgi_pass": "php:9000"}, "nginx", 'host not found in upstream "php'),
    ],
    ids=["php-fpm-unknown-entry", "nginx-unknown-host"],
)
def test_config_rejected_by_the_tool_keeps_last_good(
    make_lab: MakeLab,
    pool: dict[str, str] | None,
    nginx: dict[str, str] | None,
    tool: str,
    message: str,
) -> None:
    lab = make_lab("pod")
    before = {role: started_at(lab, role) for role in ("php", "nginx")}

    with pytest.raises(ConfigRejected) as rejected:
        lab.apply(pool=pool, nginx=nginx)

    assert rejected.value.tool == tool
    assert message in rejected.value.output
    assert "labkit-candidate" not in rejected.value.output
    assert {role: started_at(lab, role) for role in ("php", "nginx")} == before
    assert lab.request().status == 200


def test_server_that_cannot_bind_is_rolled_back(make_lab: MakeLab) -> None:
    lab = make_lab("pod")

    # 192.0.2.1 (TEST-NET-1) is on no interface of the lab, so bind() fails; nothing is sent.
    with pytest.raises(ApplyFailed) as failed:
        lab.apply(pool={"listen": "192.0.2.1:9000"})

    assert "Cannot assign requested address" in failed.value.log_tail
    assert lab.config.pool("www").get("listen") == DEFAULT_SOCKET
    assert lab.request().status == 200


def test_restarting_fpm_in_pod_keeps_nginx_published(make_lab: MakeLab) -> None:
    lab = make_lab("pod")
    nginx_started = started_at(lab, "nginx")

    lab.apply(pool={"listen.mode": "0600"})
    lab.apply(pool={"listen.mode": "0660"})

    assert started_at(lab, "nginx") == nginx_started
    assert lab.request().status == 200


def test_nginx_user_change_applies_on_reload(make_lab: MakeLab) -> None:
    lab = make_lab("pod")

    lab.apply(pool={"listen.owner": "ubuntu", "listen.group": "ubuntu"})
    lab.apply(nginx={"user": "ubuntu"})
    workers = lab.run("nginx", ["ps", "-o", "user=", "-C", "nginx"]).split()

    assert lab.request().status == 200
    assert workers.count("ubuntu") >= 1


def test_images_know_the_same_accounts(make_lab: MakeLab) -> None:
    lab = make_lab("pod")

    tables = {
        role: (
            lab.run(role, ["getent", "passwd", *IMAGE_USERS]),
            lab.run(role, ["getent", "group", *IMAGE_GROUPS]),
        )
        for role in ("php", "nginx")
    }

    assert tables["php"] == tables["nginx"]
    assert "ubuntu:x:1000:1000" in tables["php"][0]


def test_up_replaces_leftovers_of_a_crashed_lab(make_lab: MakeLab) -> None:
    crashed = make_lab("pod")

    # A second Lab object with the same name stands for the next kernel after a crash.
    again = Lab(crashed.name, "pod").up(build=False)

    assert again.request().status == 200
    assert len(crashed.engine.find_containers({"labkit.lab": crashed.name})) == 3


def test_cli_request_json_reports_status_and_cause(
    make_lab: MakeLab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = make_lab("pod")
    args = ["--pool", "listen.owner=ubuntu", "--pool", "listen.group=ubuntu"]
    assert cli_main(["apply", "--lab", lab.name, *args]) == 0
    capsys.readouterr()

    assert cli_main(["request", "--lab", lab.name, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)

    assert (printed["status"], printed["cause"]) == (502, "socket-permission-denied")


def test_attach_reads_back_the_applied_configuration(make_lab: MakeLab) -> None:
    lab = make_lab("network")
    lab.apply(pool={"listen.mode": "0666"})

    attached = Lab.attach(lab.name)

    assert attached.config == lab.config
    assert attached.topology == "network"
    assert attached.diff() == lab.diff() != ""
