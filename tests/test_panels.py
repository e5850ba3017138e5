"""The listen panel, driven the way a learner drives it: set fields, `.click()` the buttons.

Engine tests run a real lab; the others build a panel around a lab that is never started and
check what happens before anything reaches a container.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from labkit import Lab, LabConfig
from labkit.config import DEFAULT_SOCKET
from labkit.panels import BADGE_COLOURS, ListenPanel

MakeLab = Callable[..., Lab]


def started_at(lab: Lab, role: str) -> str:
    containers = lab.status()["containers"]
    assert isinstance(containers, dict)
    return str(containers[role]["started_at"])


def unstarted_panel() -> ListenPanel:
    """Return a panel whose lab is never started: only what needs no container works."""
    return ListenPanel(name="panel-not-started")


# Without an engine


def test_fields_start_from_the_lab_config() -> None:
    panel = unstarted_panel()

    pool = {key: field.value for key, field in panel.pool_fields.items()}
    nginx = {key: field.value for key, field in panel.nginx_fields.items()}

    assert pool == {
        "listen": DEFAULT_SOCKET,
        "listen.owner": "www-data",
        "listen.group": "www-data",
        "listen.mode": "",
        "listen.allowed_clients": "",
    }
    assert nginx == {"user": "www-data", "fastcgi_pass": f"unix:{DEFAULT_SOCKET}"}
    assert panel.socket_type.value == "unix"
    assert panel.badge.value == "no request yet"


def test_socket_type_tcp_fills_both_sides() -> None:
    panel = unstarted_panel()

    panel.socket_type.value = "tcp"
    tcp = (panel.pool_fields["listen"].value, panel.nginx_fields["fastcgi_pass"].value)
    panel.socket_type.value = "unix"
    unix = (panel.pool_fields["listen"].value, panel.nginx_fields["fastcgi_pass"].value)

    assert tcp == ("127.0.0.1:9000", "127.0.0.1:9000")
    assert unix == (DEFAULT_SOCKET, f"unix:{DEFAULT_SOCKET}")


@pytest.mark.parametrize(
    ("listen", "kind", "fastcgi_pass"),
    [
        ("127.0.0.1:9000", "tcp", "127.0.0.1:9000"),
        ("9000", "tcp", "127.0.0.1:9000"),
        ("[::1]:9001", "tcp", "[::1]:9001"),
        ("/run/php/other.sock", "unix", "unix:/run/php/other.sock"),
    ],
    ids=["address-and-port", "bare-port", "ipv6", "socket-path"],
)
def test_listen_value_sets_socket_type_and_nginx_follows(
    listen: str, kind: str, fastcgi_pass: str
) -> None:
    panel = unstarted_panel()
    panel.socket_type.value = "tcp" if kind == "unix" else "unix"

    panel.pool_fields["listen"].value = listen

    assert panel.socket_type.value == kind
    assert panel.pool_fields["listen"].value == listen
    assert panel.nginx_fields["fastcgi_pass"].value == fastcgi_pass


@pytest.mark.parametrize(
    ("side", "key", "value", "expected"),
    [
        ("pool", "listen.mode", "9999", "must be octal like `0660`"),
        ("pool", "listen.owner", "root; evil", "must be one of the lab's accounts"),
        ("pool", "listen.allowed_clients", "10.0.0.0/8", "IP addresses (no networks or names)"),
        ("pool", "listen", "unix:/run/php/php8.2-fpm.sock", "without Nginx's `unix:` prefix"),
        ("pool", "listen", "", "must be set (PHP-FPM requires it), got nothing"),
        ("nginx", "user", "www-data nosuchgroup", "must be one of the lab's accounts"),
        ("nginx", "fastcgi_pass", "/run/php/php8.2-fpm.sock", "needs the prefix"),
    ],
    ids=[
        "mode-9999",
        "owner-with-semicolon",
        "clients-network",
        "listen-with-unix-prefix",
        "listen-empty",
        "nginx-group-unknown",
        "fastcgi-pass-without-prefix",
    ],
)
def test_refused_value_is_shown_beside_its_field(
    side: str, key: str, value: str, expected: str
) -> None:
    panel = unstarted_panel()
    fields = panel.pool_fields if side == "pool" else panel.nginx_fields
    fields[key].value = value

    panel.apply_button.click()

    assert expected in fields[key].message.value
    others = [
        f for f in (*panel.pool_fields.values(), *panel.nginx_fields.values()) if f.key != key
    ]
    assert all(f.message.value == "" for f in others)
    assert "error: nothing applied, the lab keeps its configuration" in panel.summary()
    assert fields[key].value == value
    assert not panel.apply_button.disabled


def test_displaying_the_panel_shows_its_widget_and_a_short_text() -> None:
    panel = unstarted_panel()

    bundle = panel._repr_mimebundle_()

    assert bundle is not None
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.widget.model_id
    assert bundle["text/plain"] == "ListenPanel for lab 'panel-not-started' (pod)"


# Against a real lab

engine = pytest.mark.engine


@engine
def test_default_configuration_gives_green_200(make_lab: MakeLab) -> None:
    panel = ListenPanel(make_lab(tag="panel"))

    panel.apply_button.click()

    assert panel.badge.value == "HTTP 200 OK"
    assert panel.badge.style.background == BADGE_COLOURS["green"]
    assert "ok: PHP-FPM answered through Nginx." in panel.cause.value
    assert f"srw-rw---- www-data www-data {DEFAULT_SOCKET}" in panel.socket_listing.value
    assert panel.diff.value.endswith("no change</pre>")
    assert panel.last_outcome is not None and panel.last_outcome.status == 200
    assert "HTTP 200 OK (green badge)" in panel.summary()
    assert panel.last_error == ""


@engine
def test_socket_owner_ubuntu_gives_red_502_with_nginx_line(make_lab: MakeLab) -> None:
    lab = make_lab(tag="panel")
    panel = ListenPanel(lab)
    panel.pool_fields["listen.owner"].value = "ubuntu"
    panel.pool_fields["listen.group"].value = "ubuntu"

    panel.apply_button.click()

    assert panel.badge.value == "HTTP 502 Bad Gateway"
    assert panel.badge.style.background == BADGE_COLOURS["red"]
    assert "socket-permission-denied" in panel.cause.value
    assert "(13: Permission denied) while connecting to upstream" in panel.nginx_log.value
    assert f"srw-rw---- ubuntu ubuntu {DEFAULT_SOCKET}" in panel.socket_listing.value
    assert "+listen.owner = ubuntu" in panel.diff.value
    summary = panel.summary()
    assert "applied: php-fpm restart" in summary
    assert "HTTP 502 Bad Gateway (red badge)" in summary
    assert "cause: socket-permission-denied" in summary
    assert any(
        line.startswith("nginx: ") and "(13: Permission denied)" in line
        for line in summary.splitlines()
    )
    assert lab.config.pool("www").get("listen.owner") == "ubuntu"


@engine
def test_invalid_mode_applies_nothing_and_next_request_is_200(make_lab: MakeLab) -> None:
    lab = make_lab(tag="panel")
    panel = ListenPanel(lab)
    panel.request_button.click()
    config, started = lab.config, started_at(lab, "php")

    panel.pool_fields["listen.mode"].value = "9999"
    panel.apply_button.click()
    refused = panel.summary()
    panel.request_button.click()

    assert "must be octal like `0660`" in panel.pool_fields["listen.mode"].message.value
    assert "error: nothing applied" in refused
    assert lab.config == config
    assert started_at(lab, "php") == started
    assert lab.request().status == 200
    assert panel.badge.value == "HTTP 200 OK"
    assert panel.badge.style.background == BADGE_COLOURS["green"]


@engine
def test_reset_returns_to_default_and_200(make_lab: MakeLab) -> None:
    lab = make_lab(tag="panel")
    panel = ListenPanel(lab)
    panel.pool_fields["listen.owner"].value = "ubuntu"
    panel.pool_fields["listen.group"].value = "ubuntu"
    panel.pool_fields["listen.mode"].value = "0600"
    panel.nginx_fields["user"].value = "alice"
    panel.apply_button.click()

    panel.reset_button.click()

    assert panel.badge.value == "HTTP 200 OK"
    assert panel.badge.style.background == BADGE_COLOURS["green"]
    assert panel.pool_fields["listen.owner"].value == "www-data"
    assert panel.pool_fields["listen.mode"].value == ""
    assert panel.nginx_fields["user"].value == "www-data"
    assert lab.config == LabConfig()
    assert "-listen.mode = 0600" in panel.diff.value


@engine
def test_tcp_in_pod_gives_200_and_no_socket_file(make_lab: MakeLab) -> None:
    lab = make_lab("pod", tag="panel")
    panel = ListenPanel(lab)

    panel.socket_type.value = "tcp"
    panel.apply_button.click()

    assert panel.pool_fields["listen"].value == "127.0.0.1:9000"
    assert panel.nginx_fields["fastcgi_pass"].value == "127.0.0.1:9000"
    assert panel.badge.value == "HTTP 200 OK"
    assert "no socket file: Nginx passes requests over TCP" in panel.summary()
    assert "+listen = 127.0.0.1:9000" in panel.diff.value


@engine
def test_nginx_refusal_shows_the_tools_message(make_lab: MakeLab) -> None:
    lab = make_lab(tag="panel")
    panel = ListenPanel(lab)
    # `php` is a lab host name, but in `pod` nothing resolves it: `nginx -t` refuses it.
    panel.nginx_fields["fastcgi_pass"].value = "php:9000"

    panel.apply_button.click()

    assert "nginx rejected the configuration" in panel.last_error
    assert "host not found in upstream" in panel.message.value
    assert all(f.message.value == "" for f in panel.nginx_fields.values())
    assert lab.config.nginx.fastcgi_pass == f"unix:{DEFAULT_SOCKET}"
    assert not panel.apply_button.disabled


@engine
def test_start_shows_progress_on_the_chosen_topology(new_lab_name: Callable[[str], str]) -> None:
    panel = ListenPanel(name=new_lab_name("panel-start"))
    panel.topology.value = "network"
    try:
        panel.start_button.click()

        assert panel.lab.topology == "network"
        assert "starting lab" in panel.progress.value
        assert "is up" in panel.progress.value
        assert panel.badge.value == "HTTP 200 OK"
        assert panel.summary().startswith(f"lab {panel.lab.name} (network)\n")
    finally:
        panel.lab.down()
