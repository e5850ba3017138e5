"""Validated models of a lab's PHP-FPM pools and Nginx site.

Every value is checked here, when a model is built, before anything reaches a container: a
refused value raises `ConfigError` naming the pool or server, the field, what is allowed and
what was given. Whatever passes renders to exactly one directive line, so no value can add a
line, a section or another directive to a file.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from labkit.errors import ConfigError

PHP_VERSION = "8.2"
SOCKET_DIR = "/run/php"
# /var/run is a symlink to /run on Debian 12, so both spellings reach the shared volume.
SOCKET_DIR_SPELLINGS = ("/run/php/", "/var/run/php/")
DEFAULT_SOCKET = f"{SOCKET_DIR}/php{PHP_VERSION}-fpm.sock"

# Accounts both lab images create (docker/common/users.sh); a live test compares the two.
IMAGE_USERS = ("root", "www-data", "ubuntu", "alice", "bob", "mallory", "nobody")
IMAGE_GROUPS = ("root", "www-data", "ubuntu", "alice", "bob", "mallory", "nogroup")

WORKER_USERS = tuple(u for u in IMAGE_USERS if u != "root")
WORKER_GROUPS = tuple(g for g in IMAGE_GROUPS if g != "root")
# Each lab container may run 256 processes (labkit.lab.LIMITS); leave room for the master.
MAX_CHILDREN = 200

Topology = Literal["pod", "network"]
TOPOLOGIES: tuple[Topology, ...] = ("pod", "network")

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_LAB_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_HOSTNAME = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
# Lower-case outside the brackets: PHP-FPM matches names case-insensitively (strcasecmp), so
# `Listen` would otherwise skip the checks for `listen`. Bracket keys like `env[PATH]` keep case.
_DIRECTIVE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\[[A-Za-z0-9_.]+\])?")
# A free-form pool value: printable ASCII without the characters that end a value early in
# PHP-FPM's ini syntax (`;` starts a comment, quotes and backslashes change its meaning).
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9 _./:,@%$+=*()\[\]{}<>|!?#^~&-]{1,256}")
_SOCKET_PATH = re.compile(r"[A-Za-z0-9_./-]{1,100}")


@dataclass(frozen=True)
class UnixSocket:
    """A unix socket path, as PHP-FPM's `listen` and Nginx's `unix:` form name it."""

    path: str

    def fpm_form(self) -> str:
        return self.path

    def nginx_form(self) -> str:
        return f"unix:{self.path}"


@dataclass(frozen=True)
class TcpAddress:
    """A TCP listen address; `host` None means every interface (`listen = 9000`)."""

    host: str | None
    port: int

    def fpm_form(self) -> str:
        if self.host is None:
            return str(self.port)
        return f"{self._bracketed_host()}:{self.port}"

    def nginx_form(self) -> str:
        return f"{self._bracketed_host() if self.host else '127.0.0.1'}:{self.port}"

    def _bracketed_host(self) -> str:
        assert self.host is not None
        return f"[{self.host}]" if ":" in self.host else self.host


ListenTarget = UnixSocket | TcpAddress


def parse_listen(value: str, subject: str = "pool") -> ListenTarget:
    """Read a pool's `listen` value the way PHP-FPM does.

    PHP-FPM treats a value as TCP when it contains `:` or is all digits, and as a unix socket
    path otherwise (`fpm_sockets_domain_from_address()` in sapi/fpm/fpm/fpm_sockets.c). So
    Nginx's `unix:` prefix pasted into a pool is read as host `unix`; PHP-FPM's own config
    test accepts it and start-up then fails, which is why it is refused here.

    Args:
        value: The text after `listen =`.
        subject: Names the pool in error messages.

    Returns:
        The unix socket or TCP address PHP-FPM would listen on.

    Raises:
        ConfigError: The value is not a listen address PHP-FPM could bind in the lab.
    """
    text = _require_text(value, subject, "listen")
    if text.startswith("unix:"):
        raise ConfigError(
            subject,
            "listen",
            "a socket path without Nginx's `unix:` prefix (PHP-FPM reads any `:` as host:port)",
            value,
        )
    if _is_ascii_number(text) or ":" in text:
        return _parse_host_port(text, subject, "listen", host_optional=True)
    return UnixSocket(_check_socket_path(text, subject, "listen"))


def parse_fastcgi_pass(value: str, subject: str = "nginx") -> ListenTarget:
    """Read an Nginx `fastcgi_pass` address: `unix:/path` or `host:port`.

    Raises:
        ConfigError: The value is neither form, or the path leaves the lab's socket directory.
    """
    text = _require_text(value, subject, "fastcgi_pass")
    if text.startswith("unix:"):
        return UnixSocket(_check_socket_path(text[len("unix:") :], subject, "fastcgi_pass"))
    if text.startswith("/"):
        raise ConfigError(
            subject, "fastcgi_pass", "`unix:/path` for a socket (Nginx needs the prefix)", value
        )
    return _parse_host_port(text, subject, "fastcgi_pass", host_optional=False)


def _require_text(value: object, subject: str, name: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(subject, name, "a string", value)
    if value != value.strip() or not value:
        raise ConfigError(subject, name, "a non-empty value without surrounding spaces", value)
    return value


def _check_socket_path(path: str, subject: str, name: str) -> str:
    allowed = f"an absolute path inside {SOCKET_DIR}/ (the socket volume both containers share)"
    if not _SOCKET_PATH.fullmatch(path) or not path.startswith(SOCKET_DIR_SPELLINGS):
        raise ConfigError(subject, name, allowed, path)
    if "/../" in path or path.endswith(("/", "/..", "/.")) or "/./" in path or "//" in path:
        raise ConfigError(subject, name, allowed, path)
    return path


def _parse_host_port(text: str, subject: str, name: str, host_optional: bool) -> TcpAddress:
    allowed = "`host:port`, `[ipv6]:port`" + (" or a bare port" if host_optional else "")
    host: str | None
    if _is_ascii_number(text):
        if not host_optional:
            raise ConfigError(subject, name, allowed, text)
        host, port_text = None, text
    elif text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ConfigError(subject, name, allowed, text)
        _check_ip(host, subject, name, text, version=6)
    else:
        host, sep, port_text = text.rpartition(":")
        if ":" in host or not sep:
            raise ConfigError(subject, name, allowed + " (write IPv6 in brackets)", text)
        if not _HOSTNAME.fullmatch(host):
            raise ConfigError(subject, name, allowed + " with a valid host name", text)
    if not _is_ascii_number(port_text) or not 1 <= int(port_text) <= 65535:
        raise ConfigError(subject, name, allowed + " with a port from 1 to 65535", text)
    return TcpAddress(host, int(port_text))


def _is_ascii_number(text: str) -> bool:
    # str.isdigit() also accepts digits such as `²` or `٩`, which int() rejects or reads as 9.
    return text.isascii() and text.isdigit()


def _check_ip(text: str, subject: str, name: str, given: str, version: int | None = None) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    # ipaddress accepts an IPv6 zone (`fe80::1%eth0`) of any characters, newlines included.
    if address is None or "%" in text or (version is not None and address.version != version):
        kind = f"IPv{version} address" if version else "IP address (no networks or names)"
        raise ConfigError(subject, name, f"an {kind}", given)
    return str(address)


def _check_name(value: str, subject: str, name: str, known: tuple[str, ...]) -> str:
    text = _require_text(value, subject, name)
    if not _NAME.fullmatch(text) or text not in known:
        raise ConfigError(subject, name, f"one of the lab's accounts ({', '.join(known)})", value)
    return text


def _check_names(value: str, subject: str, name: str, known: tuple[str, ...]) -> str:
    text = _require_text(value, subject, name)
    return ",".join(_check_name(item.strip(), subject, name, known) for item in text.split(","))


def _check_mode(value: str, subject: str, name: str) -> str:
    text = _require_text(value, subject, name)
    if not re.fullmatch(r"0?[0-7]{3}", text):
        raise ConfigError(
            subject, name, "octal like `0660` (three digits 0-7, optional leading 0)", value
        )
    return text.rjust(4, "0")


def _check_clients(value: str, subject: str, name: str) -> str:
    text = _require_text(value, subject, name)
    items = [item.strip() for item in text.split(",")]
    try:
        return ",".join(_check_ip(item, subject, name, value) for item in items)
    except ConfigError as error:
        allowed = "a comma-separated list of IP addresses (no networks or names)"
        raise ConfigError(subject, name, allowed, value) from error


def _check_positive(value: str, subject: str, name: str) -> str:
    text = _require_text(value, subject, name)
    if not _is_ascii_number(text) or int(text) < 1 or int(text) > 1_000_000:
        raise ConfigError(subject, name, "a whole number from 1 to 1000000", value)
    return str(int(text))


def _check_bounded(value: str, subject: str, name: str, limit: int) -> str:
    number = _check_positive(value, subject, name)
    if int(number) > limit:
        raise ConfigError(
            subject,
            name,
            f"at most {limit} (a lab container may run {limit + 56} processes)",
            value,
        )
    return number


def _check_backlog(value: str, subject: str, name: str) -> str:
    text = _require_text(value, subject, name)
    if not re.fullmatch(r"-1|[0-9]{1,6}", text):
        raise ConfigError(subject, name, "-1 (the kernel's maximum) or a whole number", value)
    return text


def _check_choice(*choices: str) -> Callable[[str, str, str], str]:
    def check(value: str, subject: str, name: str) -> str:
        text = _require_text(value, subject, name)
        if text not in choices:
            raise ConfigError(subject, name, "one of " + ", ".join(choices), value)
        return text

    return check


def _check_plain(value: str, subject: str, name: str) -> str:
    text = _require_text(value, subject, name)
    if not _PLAIN_VALUE.fullmatch(text):
        raise ConfigError(
            subject,
            name,
            "printable text without newlines, `;`, quotes or backslashes (at most 256 characters)",
            value,
        )
    return text


def _check_listen(value: str, subject: str, name: str) -> str:
    return parse_listen(value, subject).fpm_form()


# Longer values are refused before any check: a pool file travels inside one exec's command.
VALUE_LIMIT = 1000

# Directives whose value PHP-FPM takes as a path and, when relative, prefixes with its own
# prefix: `php_admin_value[error_log] = 0` becomes /usr/0 (shown by tests/test_config_live.py).
PATH_DIRECTIVES = frozenset(
    {
        "access.log",
        "slowlog",
        "chdir",
        "php_value[error_log]",
        "php_admin_value[error_log]",
    }
)

_POOL_CHECKS: dict[str, Callable[[str, str, str], str]] = {
    "listen": _check_listen,
    "listen.owner": lambda v, s, n: _check_name(v, s, n, IMAGE_USERS),
    "listen.group": lambda v, s, n: _check_name(v, s, n, IMAGE_GROUPS),
    "listen.mode": _check_mode,
    "listen.allowed_clients": _check_clients,
    "listen.acl_users": lambda v, s, n: _check_names(v, s, n, IMAGE_USERS),
    "listen.acl_groups": lambda v, s, n: _check_names(v, s, n, IMAGE_GROUPS),
    "listen.backlog": _check_backlog,
    # PHP-FPM refuses to run a pool as root unless started with --allow-to-run-as-root.
    "user": lambda v, s, n: _check_name(v, s, n, WORKER_USERS),
    "group": lambda v, s, n: _check_name(v, s, n, WORKER_GROUPS),
    "pm": _check_choice("static", "dynamic", "ondemand"),
    "pm.max_children": lambda v, s, n: _check_bounded(v, s, n, MAX_CHILDREN),
    "pm.start_servers": _check_positive,
    "pm.min_spare_servers": _check_positive,
    "pm.max_spare_servers": _check_positive,
    "pm.max_requests": _check_positive,
}

# Changing any of these needs a full PHP-FPM restart: on reload (SIGUSR2) the master inherits
# the open listening socket and does not re-create, re-chown or re-chmod it.
RESTART_DIRECTIVES = frozenset(
    {
        "listen",
        "listen.owner",
        "listen.group",
        "listen.mode",
        "listen.acl_users",
        "listen.acl_groups",
        "listen.backlog",
    }
)


def check_pool_directive(pool: str, key: object, value: object) -> tuple[str, str]:
    """Validate one pool directive and return it in the form it will be rendered.

    Known directives get a specific check; any other name must look like a PHP-FPM directive
    (`php_admin_value[memory_limit]`, `pm.max_requests`) and its value must be plain text.
    PHP-FPM's own config test then judges whether the name exists.

    Raises:
        ConfigError: The name or value is refused.
    """
    subject = f"pool {pool!r}"
    if not isinstance(key, str) or not _DIRECTIVE.fullmatch(key):
        raise ConfigError(subject, str(key), "a PHP-FPM directive name like `listen.mode`", key)
    if key == "include":
        raise ConfigError(subject, key, "a pool directive (not include)", key)
    if not isinstance(value, str):
        raise ConfigError(subject, key, "a string", value)
    if len(value) > VALUE_LIMIT:
        raise ConfigError(subject, key, f"at most {VALUE_LIMIT} characters", value)
    check = _POOL_CHECKS.get(key, _check_plain)
    checked = check(value, subject, key)
    if key in PATH_DIRECTIVES and not checked.startswith("/"):
        allowed = "an absolute path (PHP-FPM reads a relative one against its prefix, /usr)"
        raise ConfigError(subject, key, allowed, value)
    return key, checked


@dataclass(frozen=True)
class PoolConfig:
    """One PHP-FPM pool: its name and its directives in file order."""

    name: str
    directives: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError("pool", "name", "lower-case letters, digits, `_` or `-`", self.name)
        checked = tuple(check_pool_directive(self.name, k, v) for k, v in self.directives)
        keys = [k for k, _ in checked]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ConfigError(f"pool {self.name!r}", duplicates[0], "set once", "twice")
        if "listen" not in keys:
            raise ConfigError(f"pool {self.name!r}", "listen", "set (PHP-FPM requires it)", None)
        object.__setattr__(self, "directives", checked)

    def get(self, key: str) -> str | None:
        """Return a directive's value, or None when the pool does not set it."""
        return dict(self.directives).get(key)

    @property
    def listen(self) -> ListenTarget:
        value = self.get("listen")
        assert value is not None
        return parse_listen(value, f"pool {self.name!r}")

    def with_changes(self, changes: Mapping[str, str | None]) -> PoolConfig:
        """Return a copy with directives set, added, or removed (value None)."""
        current = dict(self.directives)
        for key, value in changes.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
        return replace(self, directives=tuple(current.items()))


@dataclass(frozen=True)
class NginxConfig:
    """The Nginx side: the worker account and where the PHP location passes requests."""

    fastcgi_pass: str = f"unix:{DEFAULT_SOCKET}"
    user: str = "www-data"
    fastcgi_read_timeout: str = "60"

    def __post_init__(self) -> None:
        parse_fastcgi_pass(self.fastcgi_pass)
        user = _require_text(self.user, "nginx", "user")
        parts = user.split()
        if len(parts) > 2 or user != " ".join(parts):
            raise ConfigError("nginx", "user", "`user` or `user group`", self.user)
        _check_name(parts[0], "nginx", "user", IMAGE_USERS)
        if len(parts) == 2:
            _check_name(parts[1], "nginx", "user (group part)", IMAGE_GROUPS)
        timeout = _require_text(self.fastcgi_read_timeout, "nginx", "fastcgi_read_timeout")
        if not re.fullmatch(r"[1-9][0-9]{0,3}", timeout):
            raise ConfigError("nginx", "fastcgi_read_timeout", "seconds from 1 to 9999", timeout)

    @property
    def upstream(self) -> ListenTarget:
        return parse_fastcgi_pass(self.fastcgi_pass)

    def with_changes(self, changes: Mapping[str, str | None]) -> NginxConfig:
        """Return a copy with settings changed; None restores a setting's default.

        Raises:
            ConfigError: An unknown setting or a refused value.
        """
        known = {f for f in self.__dataclass_fields__}
        values: dict[str, str] = {}
        defaults = NginxConfig()
        for key, value in changes.items():
            if key not in known:
                raise ConfigError("nginx", str(key), "one of " + ", ".join(sorted(known)), value)
            values[key] = getattr(defaults, key) if value is None else value
        return replace(self, **values)


@dataclass(frozen=True)
class SiteConfig:
    """A further Nginx virtual host that passes its PHP requests to its own address."""

    server_name: str
    fastcgi_pass: str

    def __post_init__(self) -> None:
        name = _require_text(self.server_name, "site", "server_name")
        if not _HOSTNAME.fullmatch(name) or name == "_" or len(name) > 100:
            raise ConfigError("site", "server_name", "a host name like `alice.test`", name)
        parse_fastcgi_pass(self.fastcgi_pass, f"site {name!r}")

    @property
    def upstream(self) -> ListenTarget:
        return parse_fastcgi_pass(self.fastcgi_pass)


def default_pool(name: str = "www") -> PoolConfig:
    """Return Debian 12's stock `www` pool, reduced to its active lines."""
    return PoolConfig(
        name,
        (
            ("user", "www-data"),
            ("group", "www-data"),
            ("listen", DEFAULT_SOCKET),
            ("listen.owner", "www-data"),
            ("listen.group", "www-data"),
            ("pm", "dynamic"),
            ("pm.max_children", "5"),
            ("pm.start_servers", "2"),
            ("pm.min_spare_servers", "1"),
            ("pm.max_spare_servers", "3"),
        ),
    )


@dataclass(frozen=True)
class LabConfig:
    """Everything a lab renders: its pools and the Nginx side."""

    pools: tuple[PoolConfig, ...] = field(default_factory=lambda: (default_pool(),))
    nginx: NginxConfig = field(default_factory=NginxConfig)
    sites: tuple[SiteConfig, ...] = ()

    def __post_init__(self) -> None:
        names = [p.name for p in self.pools]
        if not names or len(set(names)) != len(names):
            raise ConfigError("lab", "pools", "at least one pool, each name once", names)
        hosts = [s.server_name for s in self.sites]
        if len(set(hosts)) != len(hosts):
            raise ConfigError("lab", "sites", "each server_name once", hosts)

    def pool(self, name: str) -> PoolConfig:
        """Return the pool called `name`.

        Raises:
            ConfigError: No such pool.
        """
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise ConfigError("lab", "pool", "one of " + ", ".join(p.name for p in self.pools), name)

    def with_changes(
        self,
        pool: Mapping[str, str | None] | None = None,
        nginx: Mapping[str, str | None] | None = None,
        pool_name: str = "www",
    ) -> LabConfig:
        """Return a copy with pool directives and Nginx settings changed.

        Raises:
            ConfigError: Any refused name or value; nothing is changed.
        """
        pools = self.pools
        if pool:
            target = self.pool(pool_name).with_changes(pool)
            pools = tuple(target if p.name == pool_name else p for p in pools)
        new_nginx = self.nginx.with_changes(nginx) if nginx else self.nginx
        return LabConfig(pools, new_nginx, self.sites)

    def with_pool(self, name: str, directives: Mapping[str, str] | None) -> LabConfig:
        """Return a copy with pool `name` added or replaced, or removed when `directives` is None.

        Raises:
            ConfigError: A refused directive, or removing the last pool.
        """
        others = tuple(p for p in self.pools if p.name != name)
        if directives is None:
            if len(others) == len(self.pools):
                self.pool(name)
            return LabConfig(others, self.nginx, self.sites)
        pool = PoolConfig(name, tuple(directives.items()))
        replaced = tuple(pool if p.name == name else p for p in self.pools)
        return LabConfig(
            replaced if len(others) < len(self.pools) else (*self.pools, pool),
            self.nginx,
            self.sites,
        )

    def with_site(self, server_name: str, fastcgi_pass: str | None) -> LabConfig:
        """Return a copy with a site added or changed, or removed when `fastcgi_pass` is None.

        Raises:
            ConfigError: A refused name or address, or an unknown site to remove.
        """
        others = tuple(s for s in self.sites if s.server_name != server_name)
        if fastcgi_pass is None:
            if len(others) == len(self.sites):
                known = ", ".join(s.server_name for s in self.sites) or "none"
                raise ConfigError("lab", "site", f"one of the lab's sites ({known})", server_name)
            return LabConfig(self.pools, self.nginx, others)
        site = SiteConfig(server_name, fastcgi_pass)
        sites = tuple(site if s.server_name == server_name else s for s in self.sites)
        return LabConfig(
            self.pools, self.nginx, sites if len(others) < len(self.sites) else (*self.sites, site)
        )


def check_lab_name(name: object) -> str:
    """Return `name` if it can name a lab and its Docker objects.

    Raises:
        ConfigError: Not lower-case letters, digits and dashes, at most 40 characters.
    """
    if not isinstance(name, str) or not _LAB_NAME.fullmatch(name):
        raise ConfigError("lab", "name", "lower-case letters, digits and `-`, at most 40", name)
    return name


def check_topology(topology: object) -> Topology:
    """Return `topology` if it is `pod` or `network`.

    Raises:
        ConfigError: Any other value.
    """
    if topology == "pod":
        return "pod"
    if topology == "network":
        return "network"
    raise ConfigError("lab", "topology", "`pod` or `network`", topology)


def config_to_dict(config: LabConfig) -> dict[str, object]:
    """Return a JSON-ready form of `config`, read back by `config_from_dict`."""
    return {
        "pools": [
            {"name": p.name, "directives": [list(d) for d in p.directives]} for p in config.pools
        ],
        "nginx": {key: getattr(config.nginx, key) for key in NginxConfig.__dataclass_fields__},
        "sites": [[s.server_name, s.fastcgi_pass] for s in config.sites],
    }


def config_from_dict(data: Mapping[str, object]) -> LabConfig:
    """Rebuild a `LabConfig` from `config_to_dict` output, validating every value again.

    Raises:
        ConfigError: The data does not describe a valid lab configuration.
    """
    try:
        pools = tuple(
            PoolConfig(p["name"], tuple((k, v) for k, v in p["directives"]))
            for p in data["pools"]  # type: ignore[attr-defined]
        )
        nginx = NginxConfig(**data["nginx"])  # type: ignore[arg-type]
        sites = tuple(SiteConfig(n, f) for n, f in data.get("sites", ()))  # type: ignore[attr-defined]
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError("lab", "state", "a saved labkit configuration", str(error)) from error
    return LabConfig(pools, nginx, sites)
