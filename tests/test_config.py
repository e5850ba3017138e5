"""Validation of pool directives, Nginx settings and whole lab configurations."""

from __future__ import annotations

import json

import pytest

from labkit import ConfigError, LabConfig, LabkitError, NginxConfig, PoolConfig
from labkit.config import (
    DEFAULT_SOCKET,
    TcpAddress,
    UnixSocket,
    check_lab_name,
    check_pool_directive,
    check_topology,
    config_from_dict,
    config_to_dict,
    default_pool,
    parse_listen,
)


def refused(key: str, value: object) -> ConfigError:
    """Return the error `check_pool_directive` raises for a pool `www` directive."""
    with pytest.raises(ConfigError) as caught:
        check_pool_directive("www", key, value)
    return caught.value


# listen


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(DEFAULT_SOCKET, UnixSocket(DEFAULT_SOCKET), id="debian-default-socket"),
        pytest.param("/var/run/php/www.sock", UnixSocket("/var/run/php/www.sock"), id="var-run"),
        pytest.param("9000", TcpAddress(None, 9000), id="bare-port"),
        pytest.param("127.0.0.1:9000", TcpAddress("127.0.0.1", 9000), id="ipv4-and-port"),
        pytest.param("0.0.0.0:9000", TcpAddress("0.0.0.0", 9000), id="ipv4-any"),
        pytest.param("[::1]:9000", TcpAddress("::1", 9000), id="ipv6-in-brackets"),
        pytest.param("[::]:9000", TcpAddress("::", 9000), id="ipv6-any-in-brackets"),
        pytest.param("php:9000", TcpAddress("php", 9000), id="host-name-and-port"),
        pytest.param("127.0.0.1:65535", TcpAddress("127.0.0.1", 65535), id="highest-port"),
    ],
)
def test_listen_is_accepted_when_php_fpm_can_bind_it(value: str, expected: object) -> None:
    assert parse_listen(value) == expected
    assert check_pool_directive("www", "listen", value) == ("listen", value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("unix:/run/php/php8.2-fpm.sock", id="nginx-unix-prefix"),
        pytest.param("/tmp/php.sock", id="outside-run-php"),
        pytest.param("/run/phpx/php.sock", id="sibling-of-run-php"),
        pytest.param("run/php/php.sock", id="relative-path"),
        pytest.param("/run/php", id="socket-directory-itself"),
        pytest.param("/run/php/", id="trailing-slash"),
        pytest.param("/run/php/../../etc/php.sock", id="dot-dot-escape"),
        pytest.param("/run/php/sub/../php.sock", id="dot-dot-inside"),
        pytest.param("/run/php/..", id="dot-dot-at-end"),
        pytest.param("/run/php/./php.sock", id="dot-segment"),
        pytest.param("/run/php//php.sock", id="double-slash"),
        pytest.param("::1:9000", id="ipv6-without-brackets"),
        pytest.param("[127.0.0.1]:9000", id="ipv4-in-brackets"),
        pytest.param("[::1]9000", id="brackets-without-colon"),
        pytest.param("[::1%eth0]:9000", id="ipv6-zone"),
        pytest.param("127.0.0.1:0", id="port-zero"),
        pytest.param("127.0.0.1:65536", id="port-too-high"),
        pytest.param("127.0.0.1:", id="port-missing"),
        pytest.param("bad_host:9000", id="host-name-with-underscore"),
        pytest.param("\u0669\u0660\u0660\u0660", id="arabic-indic-digits"),
        pytest.param("\u00b2", id="superscript-digit"),
        pytest.param("", id="empty"),
        pytest.param(" 9000", id="leading-space"),
    ],
)
def test_listen_is_refused_when_php_fpm_could_not_bind_it_in_the_lab(value: str) -> None:
    error = refused("listen", value)

    assert error.field == "listen"


def test_listen_refusal_of_unix_prefix_explains_php_fpm_reading() -> None:
    error = refused("listen", "unix:/run/php/php8.2-fpm.sock")

    assert "unix:" in error.allowed
    assert error.given == "unix:/run/php/php8.2-fpm.sock"


@pytest.mark.parametrize(
    ("target", "fpm_form", "nginx_form"),
    [
        pytest.param(
            UnixSocket(DEFAULT_SOCKET), DEFAULT_SOCKET, f"unix:{DEFAULT_SOCKET}", id="unix"
        ),
        pytest.param(TcpAddress(None, 9000), "9000", "127.0.0.1:9000", id="bare-port"),
        pytest.param(TcpAddress("::1", 9000), "[::1]:9000", "[::1]:9000", id="ipv6"),
        pytest.param(TcpAddress("php", 9000), "php:9000", "php:9000", id="host-name"),
    ],
)
def test_listen_target_is_spelled_for_each_server(
    target: UnixSocket | TcpAddress, fpm_form: str, nginx_form: str
) -> None:
    assert target.fpm_form() == fpm_form
    assert target.nginx_form() == nginx_form


# Other specially-checked pool directives


@pytest.mark.parametrize(
    ("key", "value", "rendered"),
    [
        pytest.param("listen.mode", "0660", "0660", id="mode-0660"),
        pytest.param("listen.mode", "660", "0660", id="mode-660-gets-leading-zero"),
        pytest.param("listen.mode", "0666", "0666", id="mode-0666"),
        pytest.param("listen.mode", "0600", "0600", id="mode-0600"),
        pytest.param("listen.owner", "www-data", "www-data", id="owner-www-data"),
        pytest.param("listen.owner", "alice", "alice", id="owner-alice"),
        pytest.param("listen.group", "nogroup", "nogroup", id="group-nogroup"),
        pytest.param("user", "bob", "bob", id="user-bob"),
        pytest.param("group", "www-data", "www-data", id="group-www-data"),
        pytest.param("listen.allowed_clients", "127.0.0.1", "127.0.0.1", id="clients-one-ipv4"),
        pytest.param("listen.allowed_clients", "::1", "::1", id="clients-one-ipv6"),
        pytest.param(
            "listen.allowed_clients", "127.0.0.1, ::1", "127.0.0.1,::1", id="clients-list-spaced"
        ),
        pytest.param("listen.acl_users", "www-data,alice", "www-data,alice", id="acl-users"),
        pytest.param("listen.acl_groups", "www-data, bob", "www-data,bob", id="acl-groups-spaced"),
        pytest.param("listen.backlog", "-1", "-1", id="backlog-kernel-maximum"),
        pytest.param("listen.backlog", "511", "511", id="backlog-511"),
        pytest.param("pm", "ondemand", "ondemand", id="pm-ondemand"),
        pytest.param("pm.max_children", "5", "5", id="max-children-5"),
        pytest.param("pm.max_children", "05", "5", id="max-children-leading-zero"),
        pytest.param("pm.max_requests", "1000000", "1000000", id="max-requests-limit"),
    ],
)
def test_checked_directive_is_accepted_in_its_rendered_form(
    key: str, value: str, rendered: str
) -> None:
    assert check_pool_directive("www", key, value) == (key, rendered)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("listen.mode", "9999", id="mode-9999"),
        pytest.param("listen.mode", "66x", id="mode-66x"),
        pytest.param("listen.mode", "0668", id="mode-digit-8"),
        pytest.param("listen.mode", "66", id="mode-two-digits"),
        pytest.param("listen.mode", "06600", id="mode-five-digits"),
        pytest.param("listen.mode", "0o660", id="mode-python-octal"),
        pytest.param("listen.owner", "eve", id="owner-not-in-image"),
        pytest.param("listen.owner", "WWW-DATA", id="owner-upper-case"),
        pytest.param("listen.owner", "33", id="owner-numeric"),
        pytest.param("listen.group", "nobody", id="group-is-a-user-name"),
        pytest.param("listen.group", "staff", id="group-not-in-image"),
        pytest.param("user", "eve", id="user-not-in-image"),
        pytest.param("group", "eve", id="group-not-in-image-worker"),
        pytest.param("listen.acl_users", "www-data,eve", id="acl-users-one-unknown"),
        pytest.param("listen.acl_users", "www-data,,alice", id="acl-users-empty-item"),
        pytest.param("listen.acl_groups", "nobody", id="acl-groups-user-name"),
        pytest.param("listen.allowed_clients", "172.19.0.0/16", id="clients-cidr"),
        pytest.param("listen.allowed_clients", "localhost", id="clients-host-name"),
        pytest.param("listen.allowed_clients", "any", id="clients-any"),
        pytest.param("listen.allowed_clients", "127.0.0.1,", id="clients-trailing-comma"),
        pytest.param("listen.allowed_clients", "fe80::1%eth0", id="clients-ipv6-zone"),
        pytest.param("listen.backlog", "-2", id="backlog-negative"),
        pytest.param("listen.backlog", "1234567", id="backlog-seven-digits"),
        pytest.param("pm", "Dynamic", id="pm-capitalised"),
        pytest.param("pm", "auto", id="pm-unknown"),
        pytest.param("pm.max_children", "0", id="max-children-zero"),
        pytest.param("pm.max_children", "-1", id="max-children-negative"),
        pytest.param("pm.max_children", "1000001", id="max-children-too-many"),
        pytest.param("pm.max_children", "five", id="max-children-word"),
        pytest.param("pm.max_children", "\u0665", id="max-children-arabic-indic-digit"),
        pytest.param("pm.max_children", "\u00b2", id="max-children-superscript-digit"),
    ],
)
def test_checked_directive_is_refused_when_value_is_outside_its_rules(key: str, value: str) -> None:
    error = refused(key, value)

    assert error.field == key
    # A list directive names the item it refused.
    assert error.given in (value, *value.split(","))


# Injection: no value may end its line, start a comment or open a quoted string.

_VALID_VALUES = {
    "listen": DEFAULT_SOCKET,
    "listen.owner": "www-data",
    "listen.group": "www-data",
    "listen.mode": "0660",
    "listen.allowed_clients": "127.0.0.1",
    "listen.acl_users": "www-data",
    "listen.backlog": "511",
    "user": "www-data",
    "pm": "dynamic",
    "pm.max_children": "5",
    "php_admin_value[memory_limit]": "128M",
    "request_terminate_timeout": "30s",
}
_PAYLOADS = {
    "newline": "\nlisten = 0.0.0.0:9000",
    "carriage-return": "\rlisten = 0.0.0.0:9000",
    "trailing-newline": "\n",
    "section": "\n[evil]",
    "semicolon": " ; comment",
    "double-quote": '"',
    "single-quote": "'",
    "backslash": "\\",
    "nul": "\x00",
}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param(key, valid + payload, id=f"{key}-{name}")
        for key, valid in _VALID_VALUES.items()
        for name, payload in _PAYLOADS.items()
    ],
)
def test_pool_value_is_refused_when_it_smuggles_syntax(key: str, value: str) -> None:
    error = refused(key, value)

    assert error.given == value


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("listen", "[::1%\nuser = root]:9000", id="listen-zone-newline"),
        pytest.param("listen", "[::1%;x]:9000", id="listen-zone-semicolon"),
        pytest.param(
            "listen.allowed_clients", "::1%\nlisten = 0.0.0.0:9000", id="clients-zone-newline"
        ),
    ],
)
def test_pool_value_is_refused_when_ipv6_zone_smuggles_syntax(key: str, value: str) -> None:
    error = refused(key, value)

    assert error.field == key


# Directive names


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("php_admin_value[memory_limit]", id="php-admin-value"),
        pytest.param("php_flag[display_errors]", id="php-flag"),
        pytest.param("env[PATH]", id="env-upper-case-variable"),
        pytest.param("request_terminate_timeout", id="plain-name"),
        pytest.param("pm.status_path", id="dotted-name"),
        pytest.param("made_up.directive", id="unknown-but-well-formed"),
    ],
)
def test_directive_name_is_accepted_when_it_looks_like_php_fpm_syntax(key: str) -> None:
    assert check_pool_directive("www", key, "/usr/bin") == (key, "/usr/bin")


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("listen mode", id="space"),
        pytest.param("Listen", id="capitalised-known-name"),
        pytest.param("LISTEN.MODE", id="upper-case-known-name"),
        pytest.param("include", id="include"),
        pytest.param("php_value[a][b]", id="two-bracket-pairs"),
        pytest.param("php_value[a", id="unclosed-bracket"),
        pytest.param("php_value]a[", id="reversed-brackets"),
        pytest.param("php_value[]", id="empty-brackets"),
        pytest.param("php_value[a b]", id="space-in-brackets"),
        pytest.param("php_value[a]x", id="text-after-brackets"),
        pytest.param("[www]", id="section-header"),
        pytest.param("listen=", id="equals-sign"),
        pytest.param("listen\n", id="newline"),
        pytest.param("1listen", id="leading-digit"),
        pytest.param("listen..mode", id="empty-dotted-part"),
        pytest.param("", id="empty"),
    ],
)
def test_directive_name_is_refused_when_it_is_not_one_directive(key: str) -> None:
    error = refused(key, "1")

    assert error.given == key


def test_directive_value_is_refused_when_not_a_string() -> None:
    error = refused("pm.max_children", 5)

    assert (error.field, error.given) == ("pm.max_children", 5)


# PoolConfig


def test_pool_is_refused_without_listen() -> None:
    with pytest.raises(ConfigError) as caught:
        PoolConfig("www", (("pm", "dynamic"),))

    assert caught.value.field == "listen"


def test_pool_is_refused_when_a_directive_is_set_twice() -> None:
    with pytest.raises(ConfigError) as caught:
        PoolConfig("www", (("listen", "9000"), ("listen", "9001")))

    assert caught.value.field == "listen"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("WWW", id="upper-case"),
        pytest.param("w w", id="space"),
        pytest.param("www]\n[evil", id="section-injection"),
        pytest.param("", id="empty"),
    ],
)
def test_pool_is_refused_when_name_cannot_be_a_section(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PoolConfig(name, (("listen", "9000"),))

    assert caught.value.field == "name"


def test_pool_stores_directives_in_rendered_form() -> None:
    pool = PoolConfig("www", (("listen", "9000"), ("listen.mode", "660")))

    assert pool.directives == (("listen", "9000"), ("listen.mode", "0660"))
    assert pool.listen == TcpAddress(None, 9000)


# NginxConfig


@pytest.mark.parametrize(
    ("value", "upstream"),
    [
        pytest.param(f"unix:{DEFAULT_SOCKET}", UnixSocket(DEFAULT_SOCKET), id="unix-default"),
        pytest.param("unix:/var/run/php/x.sock", UnixSocket("/var/run/php/x.sock"), id="var-run"),
        pytest.param("127.0.0.1:9000", TcpAddress("127.0.0.1", 9000), id="ipv4-and-port"),
        pytest.param("php:9000", TcpAddress("php", 9000), id="host-name-and-port"),
        pytest.param("[::1]:9000", TcpAddress("::1", 9000), id="ipv6-in-brackets"),
    ],
)
def test_fastcgi_pass_is_accepted_in_nginx_forms(value: str, upstream: object) -> None:
    assert NginxConfig(fastcgi_pass=value).upstream == upstream


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(DEFAULT_SOCKET, id="socket-without-unix-prefix"),
        pytest.param("9000", id="bare-port"),
        pytest.param("unix:/tmp/php.sock", id="socket-outside-run-php"),
        pytest.param("unix:/run/php/../php.sock", id="dot-dot"),
        pytest.param("http://php:9000", id="url"),
        pytest.param("php:9000;", id="semicolon"),
        pytest.param("php:9000\ninclude /etc/passwd", id="newline"),
        pytest.param("[::1%;}server{listen 81;}#]:9000", id="ipv6-zone-semicolon"),
        pytest.param("", id="empty"),
    ],
)
def test_fastcgi_pass_is_refused_when_not_an_nginx_address_in_the_lab(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        NginxConfig(fastcgi_pass=value)

    assert (caught.value.subject, caught.value.field) == ("nginx", "fastcgi_pass")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("www-data", id="user"),
        pytest.param("www-data www-data", id="user-and-group"),
        pytest.param("nobody nogroup", id="nobody-nogroup"),
    ],
)
def test_nginx_user_is_accepted_as_user_or_user_and_group(value: str) -> None:
    assert NginxConfig(user=value).user == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("eve", id="user-not-in-image"),
        pytest.param("nobody nobody", id="group-is-a-user-name"),
        pytest.param("www-data  www-data", id="two-spaces"),
        pytest.param("www-data www-data www-data", id="three-words"),
        pytest.param("www-data\nwww-data", id="newline-separator"),
        pytest.param("www-data;", id="semicolon"),
        pytest.param(" www-data", id="leading-space"),
    ],
)
def test_nginx_user_is_refused_when_not_image_accounts(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        NginxConfig(user=value)

    assert caught.value.subject == "nginx"
    assert caught.value.field.startswith("user")


@pytest.mark.parametrize(
    ("value", "is_accepted"),
    [
        pytest.param("60", True, id="60"),
        pytest.param("1", True, id="1"),
        pytest.param("9999", True, id="9999"),
        pytest.param("0", False, id="0"),
        pytest.param("10000", False, id="10000"),
        pytest.param("060", False, id="leading-zero"),
        pytest.param("60s", False, id="unit-suffix"),
        pytest.param("", False, id="empty"),
    ],
)
def test_fastcgi_read_timeout_is_whole_seconds_from_1_to_9999(
    value: str, is_accepted: bool
) -> None:
    if is_accepted:
        assert NginxConfig(fastcgi_read_timeout=value).fastcgi_read_timeout == value
    else:
        with pytest.raises(ConfigError) as caught:
            NginxConfig(fastcgi_read_timeout=value)
        assert caught.value.field == "fastcgi_read_timeout"


# LabConfig.with_changes


def test_with_changes_sets_a_pool_directive_and_keeps_the_original() -> None:
    original = LabConfig()

    changed = original.with_changes(pool={"listen.mode": "0666", "listen.owner": "alice"})

    assert changed.pool("www").get("listen.mode") == "0666"
    assert changed.pool("www").get("listen.owner") == "alice"
    assert original == LabConfig()


def test_with_changes_removes_a_directive_when_value_is_none() -> None:
    changed = LabConfig().with_changes(pool={"listen.owner": None})

    assert changed.pool("www").get("listen.owner") is None
    assert "listen.owner" not in dict(changed.pool("www").directives)


def test_with_changes_is_refused_when_removing_listen() -> None:
    with pytest.raises(ConfigError) as caught:
        LabConfig().with_changes(pool={"listen": None})

    assert caught.value.field == "listen"


def test_with_changes_is_refused_for_an_unknown_pool() -> None:
    with pytest.raises(ConfigError) as caught:
        LabConfig().with_changes(pool={"listen.mode": "0660"}, pool_name="api")

    assert (caught.value.field, caught.value.given) == ("pool", "api")
    assert "www" in caught.value.allowed


def test_with_changes_is_refused_for_an_unknown_nginx_key() -> None:
    with pytest.raises(ConfigError) as caught:
        LabConfig().with_changes(nginx={"listen": "80"})

    assert (caught.value.subject, caught.value.field) == ("nginx", "listen")
    assert "fastcgi_pass" in caught.value.allowed


def test_with_changes_restores_nginx_default_when_value_is_none() -> None:
    changed = LabConfig().with_changes(nginx={"user": "nobody nogroup"})

    restored = changed.with_changes(nginx={"user": None})

    assert restored.nginx == NginxConfig()


def test_with_changes_is_refused_as_a_whole_when_one_value_is_bad() -> None:
    with pytest.raises(ConfigError) as caught:
        LabConfig().with_changes(
            pool={"listen.mode": "0666"}, nginx={"fastcgi_pass": "127.0.0.1:9000", "user": "eve"}
        )

    assert caught.value.given == "eve"


def test_lab_config_is_refused_with_duplicate_pool_names() -> None:
    with pytest.raises(ConfigError) as caught:
        LabConfig((default_pool(), default_pool()))

    assert caught.value.field == "pools"


# ConfigError


def test_config_error_names_subject_field_allowed_and_given() -> None:
    error = refused("listen.mode", "66x")

    assert (error.subject, error.field, error.given) == ("pool 'www'", "listen.mode", "66x")
    assert "0660" in error.allowed
    message = str(error)
    for part in (error.subject, "`listen.mode`", error.allowed, "'66x'"):
        assert part in message


def test_config_error_is_a_value_error_and_a_labkit_error() -> None:
    with pytest.raises(ValueError) as caught:
        LabConfig().with_changes(pool={"listen.mode": "9999"})

    assert isinstance(caught.value, LabkitError)


# Saved form


def test_config_survives_a_json_round_trip() -> None:
    config = LabConfig(
        (default_pool(), PoolConfig("api", (("listen", "127.0.0.1:9001"), ("listen.mode", "660"))))
    ).with_changes(nginx={"fastcgi_pass": "127.0.0.1:9001", "user": "nobody nogroup"})

    saved = json.loads(json.dumps(config_to_dict(config)))

    assert config_from_dict(saved) == config


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({}, id="empty"),
        pytest.param({"pools": [{"name": "www"}], "nginx": {}}, id="pool-without-directives"),
        pytest.param({"pools": 5, "nginx": {}}, id="pools-not-a-list"),
        pytest.param(
            {"pools": [{"name": "www", "directives": [["listen", "9000"]]}], "nginx": {"x": "1"}},
            id="unknown-nginx-setting",
        ),
        pytest.param(
            {"pools": [{"name": "www", "directives": [["listen", "9000\n[evil]"]]}], "nginx": {}},
            id="injected-value",
        ),
    ],
)
def test_config_from_dict_is_refused_when_data_is_not_a_valid_config(
    data: dict[str, object],
) -> None:
    with pytest.raises(ConfigError):
        config_from_dict(data)


# Lab names and topologies


@pytest.mark.parametrize(
    ("name", "is_accepted"),
    [
        pytest.param("default", True, id="default"),
        pytest.param("t1234-gw0-lab-0", True, id="test-name"),
        pytest.param("a" * 40, True, id="forty-characters"),
        pytest.param("a" * 41, False, id="forty-one-characters"),
        pytest.param("Bad Name", False, id="space-and-capital"),
        pytest.param("-lab", False, id="leading-dash"),
        pytest.param("my_lab", False, id="underscore"),
        pytest.param("", False, id="empty"),
    ],
)
def test_lab_name_is_lower_case_letters_digits_and_dashes(name: str, is_accepted: bool) -> None:
    if is_accepted:
        assert check_lab_name(name) == name
    else:
        with pytest.raises(ConfigError) as caught:
            check_lab_name(name)
        assert (caught.value.field, caught.value.given) == ("name", name)


@pytest.mark.parametrize("topology", ["pod", "network"])
def test_topology_is_accepted_when_known(topology: str) -> None:
    assert check_topology(topology) == topology


def test_topology_is_refused_when_unknown() -> None:
    with pytest.raises(ConfigError) as caught:
        check_topology("mesh")

    assert (caught.value.field, caught.value.given) == ("topology", "mesh")


@pytest.mark.parametrize(
    "key", ["access.log", "slowlog", "php_admin_value[error_log]"], ids=lambda key: key
)
def test_relative_path_for_a_path_directive_is_refused(key: str) -> None:
    with pytest.raises(ConfigError, match="absolute path"):
        check_pool_directive("www", key, "0")

    assert check_pool_directive("www", key, "/var/log/x.log") == (key, "/var/log/x.log")
