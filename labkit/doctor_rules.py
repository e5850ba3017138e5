"""Predict what one `fastcgi_pass` gets from PHP-FPM, by the kernel's and the servers' rules.

Pure logic: the accounts, addresses and live file modes it needs come in as `Facts`.

* A unix socket: `connect()` needs search permission on every directory of the path and
  write permission on the socket file, judged on the worker's uid and all its groups, with
  POSIX ACLs when PHP-FPM set them (https://man7.org/linux/man-pages/man7/unix.7.html,
  https://man7.org/linux/man-pages/man5/acl.5.html). Root passes every check.
* The socket's owner, group and mode follow fpm_unix.c: mode 0660 and the master's owner
  (root) when unset (F5); `listen.owner` alone also sets the group to the owner's primary
  group; ACLs leave owner and group to the master (F6).
* Nginx's workers run as `user` with the group named there (or the user's name), plus every
  group that lists the user in the group file (initgroups(3); checked on the lab).
* TCP: a bare port binds `::` dual-stack, so it takes IPv4 too; `listen.allowed_clients` is
  checked against the connection's source address, which is the dialled loopback address on
  one host and Nginx's own address across hosts; it does not apply to unix sockets.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from labkit.doctor_files import Origin
from labkit.doctor_fpm import FpmSide, Pool
from labkit.doctor_nginx import FastcgiPass, NginxSide, Rejection
from labkit.errors import DoctorInputError

OK = "ok"
DENIED = "socket-permission-denied"
MISSING = "socket-missing"
REFUSED = "connection-refused"
NOT_ALLOWED = "client-not-allowed"
REJECTED = "config-rejected"
UNKNOWN = "unknown"
# Names for an address the doctor does not know but can reason about.
FPM_HOST = "<PHP-FPM's host>"
NGINX_HOST = "<Nginx's host>"


@dataclass(frozen=True)
class Accounts:
    """The users and groups of one machine, as /etc/passwd and /etc/group list them."""

    users: Mapping[str, tuple[int, int]]
    groups: Mapping[str, tuple[int, tuple[str, ...]]]
    source: str

    @classmethod
    def from_text(cls, passwd: str, group: str, source: str) -> Accounts:
        """Read passwd and group text.

        Raises:
            DoctorInputError: Either text holds no valid entry.
        """
        users = {f[0]: (int(f[2]), int(f[3])) for f in _records(passwd, 4)}
        groups = {
            f[0]: (int(f[2]), tuple(m for m in (f[3] if len(f) > 3 else "").split(",") if m))
            for f in _records(group, 3)
        }
        if not users:
            raise DoctorInputError(source, "no `name:x:uid:gid:...` line: not a passwd file")
        if not groups:
            raise DoctorInputError(source, "no `name:x:gid:members` line: not a group file")
        return cls(users, groups, source)

    def uid(self, name: str) -> int | None:
        """Return a user's uid (a number stands for itself), or None when unknown."""
        if name.isdigit():
            return int(name)
        return self.users[name][0] if name in self.users else None

    def gid(self, name: str) -> int | None:
        """Return a group's gid (a number stands for itself), or None when unknown."""
        if name.isdigit():
            return int(name)
        return self.groups[name][0] if name in self.groups else None

    def user_name(self, uid: int) -> str:
        """Return the name for a uid, or the number when no account has it."""
        return next((n for n, (u, _) in self.users.items() if u == uid), str(uid))

    def group_name(self, gid: int) -> str:
        """Return the name for a gid, or the number when no group has it."""
        return next((n for n, (g, _) in self.groups.items() if g == gid), str(gid))

    def initgroups(self, user: str, gid: int) -> frozenset[int]:
        """Return the groups initgroups(user, gid) gives: `gid` and every group listing `user`."""
        return frozenset({gid} | {g for g, members in self.groups.values() if user in members})


def _records(text: str, fields: int) -> list[list[str]]:
    records = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) >= fields and parts[0] and not line.startswith("#"):
            if all(p.isdigit() for p in parts[2 : min(fields, 4)]):
                records.append(parts)
    return records


@dataclass(frozen=True)
class FileMode:
    """Owner, group, mode (and ACL entries) of a socket or directory."""

    uid: int
    gid: int
    mode: int
    acl_users: tuple[int, ...] = ()
    acl_groups: tuple[int, ...] = ()


@dataclass(frozen=True)
class Facts:
    """What the doctor knows about the machines beyond the configuration files.

    Attributes:
        nginx_accounts: Users and groups where Nginx runs.
        fpm_accounts: Users and groups where PHP-FPM runs (None: the same machine's).
        topology: ``pod`` (one host, one network stack) or ``network`` (separate hosts).
        nginx_user: Overrides Nginx's `user` directive (`user` or `user group`).
        hosts: Names as Nginx resolves them, e.g. ``{"php": ("172.18.0.3",)}``.
        hosts_complete: Names missing from `hosts` do not resolve (known for the lab).
        fpm_addresses: PHP-FPM's host's own non-loopback addresses.
        nginx_addresses: Nginx's host's own non-loopback addresses.
        ipv6: ``on``; ``off`` (disabled by sysctl: `::` binds, `::1` does not); or ``absent``
            (no IPv6 in the kernel: every IPv6 socket fails, as in field case R12).
        sockets: Live socket files by path; with `live`, a path not listed does not exist.
        directories: Live directories by path.
        live: Whether `sockets` was read from the running machine.
        jail_address: For a FreeBSD jail without a loopback of its own: the jail's address,
            which 127.0.0.1 stands for when binding and which is the source of connections.
    """

    nginx_accounts: Accounts
    fpm_accounts: Accounts | None = None
    topology: str = "pod"
    nginx_user: str | None = None
    hosts: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {"localhost": ("127.0.0.1", "::1")}
    )
    hosts_complete: bool = False
    fpm_addresses: tuple[str, ...] = ()
    nginx_addresses: tuple[str, ...] = ()
    ipv6: str = "on"
    sockets: Mapping[str, FileMode] = field(default_factory=dict)
    directories: Mapping[str, FileMode] = field(default_factory=dict)
    live: bool = False
    jail_address: str | None = None

    @property
    def accounts_of_fpm(self) -> Accounts:
        """The accounts PHP-FPM resolves `listen.owner` and friends against."""
        return self.fpm_accounts or self.nginx_accounts


@dataclass(frozen=True)
class Worker:
    """The identity Nginx's worker processes run with."""

    user: str
    uid: int
    gid: int
    groups: frozenset[int]


@dataclass(frozen=True)
class Outcome:
    """One prediction: the cause, the pool reached, and why."""

    cause: str
    pool: str | None = None
    reasons: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()
    rejections: tuple[Rejection, ...] = ()


def nginx_worker(side: NginxSide, facts: Facts) -> tuple[Worker | None, list[Rejection], list[str]]:
    """Return the worker identity, what `nginx -t` refuses about it, and what was assumed."""
    assumed: list[str] = []
    origin = side.user_origin
    if facts.nginx_user:
        parts = facts.nginx_user.split()
        user, group, origin = parts[0], parts[1] if len(parts) > 1 else None, None
    elif side.user:
        user, group = side.user
    elif side.fragment:
        user, group = "www-data", None
        assumed.append(
            "no nginx.conf was read, so Nginx's workers are assumed to run as www-data "
            "(Debian's `user`); check with `ps -o user,group -C nginx` or pass --nginx-user"
        )
    else:
        user, group = "nobody", "nogroup"
        assumed.append("nginx.conf sets no `user`: workers run as nobody:nogroup (the default)")
    accounts = facts.nginx_accounts
    uid, gid = accounts.uid(user), accounts.gid(group or user)
    problems = []
    if uid is None:
        problems.append(Rejection("nginx", "test", f'getpwnam("{user}") failed', origin))
    elif gid is None:
        problems.append(Rejection("nginx", "test", f'getgrnam("{group or user}") failed', origin))
    if uid is None or gid is None:
        return None, problems, assumed
    return Worker(user, uid, gid, accounts.initgroups(user, gid)), [], assumed


def may_access(worker: Worker, file: FileMode, bit: int) -> bool:
    """Apply the kernel's permission check for one access bit (2 write, 1 search).

    Owner bits apply to the owner only, group bits (or ACL entries, limited by the mask) to
    members only; "other" applies only to a process that matched neither.
    """
    if worker.uid == 0:
        return True
    if worker.uid == file.uid:
        return bool(file.mode >> 6 & bit)
    has_acl = bool(file.acl_users or file.acl_groups)
    # PHP-FPM grants ACL entries read and write, and acl_calc_mask() opens the mask to match.
    mask = ((file.mode >> 3) & 7) | 6 if has_acl else 7
    if worker.uid in file.acl_users:
        return bool(6 & mask & bit)
    matched = []
    if file.gid in worker.groups:
        matched.append((file.mode >> 3) & 7 & mask)
    matched += [6 & mask for gid in file.acl_groups if gid in worker.groups]
    if matched:
        return any(bits & bit for bits in matched)
    return bool(file.mode & bit)


def describe_mode(file: FileMode, accounts: Accounts) -> str:
    """Return an `ls -l`-like description: owner:group and octal mode, plus ACL entries."""
    text = f"{accounts.user_name(file.uid)}:{accounts.group_name(file.gid)} {file.mode:04o}"
    entries = [f"user:{accounts.user_name(u)}:rw" for u in file.acl_users]
    entries += [f"group:{accounts.group_name(g)}:rw" for g in file.acl_groups]
    return text + (f" + ACL {', '.join(entries)}" if entries else "")


def octal(value: str | None, default: int = 0o660) -> int:
    """Read a mode the way strtoul(value, 0, 8) does: leading octal digits, else 0."""
    if not value:
        return default
    match = re.match(r"\s*[+]?([0-7]*)", value)
    digits = match.group(1) if match else ""
    return int(digits, 8) if digits else 0


def socket_from_config(pool: Pool, accounts: Accounts) -> tuple[FileMode | None, list[Rejection]]:
    """Return the owner, group and mode PHP-FPM gives the pool's socket, or why it cannot.

    fpm_unix.c: ACL entries leave owner and group to the master (root); otherwise
    `listen.owner` sets the owner and its primary group, and `listen.group` the group.
    """
    mode = octal(pool.get("listen.mode"))
    problems: list[Rejection] = []
    if pool.get("listen.acl_users") or pool.get("listen.acl_groups"):
        # Split on `,` without trimming, as fpm_unix.c does: "a, b" looks up " b".
        users = [
            _lookup(pool, "listen.acl_users", n, accounts, problems)
            for n in _items(pool, "listen.acl_users")
        ]
        groups = [
            _lookup(pool, "listen.acl_groups", n, accounts, problems)
            for n in _items(pool, "listen.acl_groups")
        ]
        acl = FileMode(
            0,
            0,
            mode,
            tuple(u for u in users if u is not None),
            tuple(g for g in groups if g is not None),
        )
        return (None, problems) if problems else (acl, [])
    uid = gid = 0
    owner, group = pool.get("listen.owner"), pool.get("listen.group")
    if owner:
        found = _lookup(pool, "listen.owner", owner, accounts, problems)
        uid = found if found is not None else 0
        gid = accounts.users[owner][1] if owner in accounts.users else gid
    if group:
        found = _lookup(pool, "listen.group", group, accounts, problems)
        gid = found if found is not None else gid
    return (None, problems) if problems else (FileMode(uid, gid, mode), [])


def _items(pool: Pool, key: str) -> list[str]:
    value = pool.get(key)
    return value.split(",") if value else []


def _lookup(
    pool: Pool, key: str, name: str, accounts: Accounts, problems: list[Rejection]
) -> int | None:
    is_user = key in ("listen.owner", "listen.acl_users")
    found = accounts.uid(name) if is_user else accounts.gid(name)
    if found is None:
        what = "uid for user" if is_user else "gid for group"
        reason = f"[pool {pool.name}] cannot get {what} '{name}'"
        problems.append(Rejection("php-fpm", "test", reason, pool.settings[key].origin))
    return found


def canonical_socket(path: str) -> str:
    """Return a socket path as the kernel finds it; /var/run is a link to /run (Debian, systemd)."""
    path = posixpath.normpath(path)
    if path == "/var/run" or path.startswith("/var/run/"):
        return "/run" + path[len("/var/run") :]
    return path


def split_listen(value: str) -> tuple[str | None, str]:
    """Split a TCP `listen` value as fpm_sockets.c does: host before the last `:`, brackets off."""
    host, sep, port = value.rpartition(":")
    if not sep:
        return None, value
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def is_tcp(value: str) -> bool:
    """Tell whether PHP-FPM reads a `listen` value as TCP (any `:`, or all digits; F3)."""
    return ":" in value or value.isdigit()


def fpm_start_problems(sides: list[FpmSide], facts: Facts) -> list[Rejection]:
    """Return what stops PHP-FPM when it starts, or makes `php-fpm -t` fail on this machine.

    Several sides are several masters (one per PHP version): their pools only collide when
    the second one binds (field case R20), while one master refuses an identical `listen`
    string at its config test (F4), which `read_fpm` already reports.
    """
    problems: list[Rejection] = []
    bound: list[tuple[Pool, str, int]] = []
    for index, side in enumerate(sides):
        for pool in side.pools:
            problems += _pool_start_problems(pool, facts)
            listen = pool.listen
            if listen is None:
                continue
            for other, other_listen, other_index in bound:
                if _same_socket(listen, other_listen, facts) and (
                    other_index != index or other_listen != listen
                ):
                    origin = pool.settings["listen"].origin
                    text = _clash_text(listen, other)
                    problems.append(Rejection("php-fpm", "start", text, origin))
                    break
            bound.append((pool, listen, index))
    return problems


def _clash_text(listen: str, other: Pool) -> str:
    where = f"pool '{other.name}' ({other.settings['listen'].origin}) holds it"
    if is_tcp(listen):
        return (
            f"unable to bind listening socket for address '{listen}': "
            f"Address already in use (98): {where}"
        )
    return f"Another FPM instance seems to already listen on {canonical_socket(listen)}: {where}"


def _pool_start_problems(pool: Pool, facts: Facts) -> list[Rejection]:
    problems = _user_problems(pool, facts.accounts_of_fpm)
    listen = pool.listen
    if listen is None or not is_tcp(listen):
        return problems
    origin = pool.settings["listen"].origin
    host, port = split_listen(listen)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        problems.append(Rejection("php-fpm", "start", f"invalid port value '{port}'", origin))
        return problems
    failure = _ipv6_failure(listen, host, facts) if host and ":" in host else ""
    if failure:
        problems.append(Rejection("php-fpm", "start", failure, origin))
    return problems


def _user_problems(pool: Pool, accounts: Accounts) -> list[Rejection]:
    user, group = pool.get("user"), pool.get("group")
    if not user:
        return []
    origin = pool.settings["user"].origin
    uid = accounts.uid(user)
    if uid is None:
        text = f"[pool {pool.name}] cannot get uid for user '{user}'"
        return [Rejection("php-fpm", "test", text, origin)]
    if group and accounts.gid(group) is None:
        text = f"[pool {pool.name}] cannot get gid for group '{group}'"
        return [Rejection("php-fpm", "test", text, pool.settings["group"].origin)]
    # fpm_unix.c: the group is `group`, else the user's primary group, else 0 (numeric user).
    gid = accounts.gid(group) if group else accounts.users.get(user, (0, 0))[1]
    if uid == 0 or gid == 0:
        text = f"[pool {pool.name}] please specify user and group other than root"
        return [Rejection("php-fpm", "start", text, origin)]
    return []


def _ipv6_failure(listen: str, host: str, facts: Facts) -> str:
    if facts.ipv6 == "absent":
        return (
            "failed to create new listening socket: socket(): Address family not supported by "
            "protocol (97): this kernel has no IPv6"
        )
    if facts.ipv6 == "on" or host == "::":
        return ""
    return (
        f"unable to bind listening socket for address '{listen}': Cannot assign requested "
        "address (99): IPv6 is disabled here"
    )


def _same_socket(one: str, two: str, facts: Facts) -> bool:
    if is_tcp(one) != is_tcp(two):
        return False
    if not is_tcp(one):
        return canonical_socket(one) == canonical_socket(two)
    host_one, port_one = split_listen(one)
    host_two, port_two = split_listen(two)
    if port_one != port_two:
        return False
    wild = (None, "0.0.0.0", "::", "*")
    if host_one in wild or host_two in wild:
        return True
    return _fpm_address(host_one, facts) == _fpm_address(host_two, facts)


def _fpm_address(host: str | None, facts: Facts) -> str | None:
    """Return the address PHP-FPM binds for a `listen` host (None: every address)."""
    if host in (None, "*"):
        return None
    assert host is not None
    if _is_ip(host):
        if facts.jail_address and ipaddress.ip_address(host).is_loopback:
            return facts.jail_address
        return str(ipaddress.ip_address(host))
    if host == "localhost":
        return "::1" if facts.ipv6 == "on" else "127.0.0.1"
    known = facts.hosts.get(host)
    return known[0] if known else FPM_HOST


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_loopback(address: str) -> bool:
    return _is_ip(address) and ipaddress.ip_address(address).is_loopback


def pass_targets(
    item: FastcgiPass, side: NginxSide, facts: Facts
) -> tuple[list[tuple[str, str]], list[Rejection], list[str]]:
    """Return what a `fastcgi_pass` dials: (``unix``, path) or (address, port) pairs.

    Raises nothing: what `nginx -t` refuses (no port, unknown host, a port on an upstream
    name) comes back as rejections, and a variable as an assumption.
    """
    value = item.value
    if "$" in value:
        return [], [], [f"{item.origin}: `fastcgi_pass {value}` is resolved per request"]
    upstream = side.upstreams.get(_host_part(value).lower())
    if upstream is not None:
        if _port_part(value):
            text = f'upstream "{upstream.name}" may not have port {_port_part(value)}'
            return [], [Rejection("nginx", "test", text, item.origin)], []
        targets: list[tuple[str, str]] = []
        rejections: list[Rejection] = []
        assumed: list[str] = []
        for server, origin in upstream.servers:
            found, problems, notes = _address_targets(server, origin, facts, upstream=True)
            targets += found
            rejections += problems
            assumed += notes
        return targets, rejections, assumed
    return _address_targets(value, item.origin, facts, upstream=False)


def _host_part(value: str) -> str:
    if value.startswith("["):
        return value[: value.find("]") + 1]
    return value.rpartition(":")[0] if ":" in value else value


def _port_part(value: str) -> str:
    if value.startswith("unix:"):
        return ""
    if value.startswith("["):
        rest = value[value.find("]") + 1 :]
        return rest[1:] if rest.startswith(":") else ""
    return value.rpartition(":")[2] if ":" in value else ""


def _address_targets(
    value: str, origin: Origin, facts: Facts, upstream: bool
) -> tuple[list[tuple[str, str]], list[Rejection], list[str]]:
    if value.startswith("unix:"):
        return [("unix", value[len("unix:") :])], [], []
    host, port = _host_part(value).strip("[]"), _port_part(value)
    # In an upstream block a server without a port means port 80.
    port = port or ("80" if upstream else "")
    if not port:
        return [], [Rejection("nginx", "test", f'no port in upstream "{value}"', origin)], []
    if _is_ip(host):
        return [(str(ipaddress.ip_address(host)), port)], [], []
    if host in facts.hosts:
        return [(address, port) for address in facts.hosts[host]], [], []
    if facts.hosts_complete:
        return [], [Rejection("nginx", "test", f'host not found in upstream "{value}"', origin)], []
    guess = FPM_HOST if facts.topology == "network" else "127.0.0.1"
    note = (
        f"{origin}: `{host}` is assumed to resolve to "
        + ("PHP-FPM's host" if facts.topology == "network" else "this host")
        + f"; check with `getent hosts {host}` where Nginx runs "
        "(`nginx -t` fails if it does not resolve)"
    )
    return [(guess, port)], [], [note]


def dial(target: tuple[str, str], worker: Worker, sides: list[FpmSide], facts: Facts) -> Outcome:
    """Predict one connection from Nginx's worker to a target."""
    kind, value = target
    if kind == "unix":
        return _dial_unix(value, worker, sides, facts)
    return _dial_tcp(kind, int(value), sides, facts)


def _pools(sides: list[FpmSide]) -> list[Pool]:
    return [pool for side in sides for pool in side.pools]


def _dial_unix(path: str, worker: Worker, sides: list[FpmSide], facts: Facts) -> Outcome:
    """Predict a connect() to a unix socket: directories, then the file, then its mode."""
    path = canonical_socket(path)
    blocked, assumed = _blocked_directory(path, worker, facts)
    if blocked:
        return Outcome(DENIED, None, (blocked,), tuple(assumed))
    pool = next((p for p in _pools(sides) if _listens_on(p, path)), None)
    if pool is None:
        return _unix_without_pool(path, worker, facts, assumed)
    if facts.live and path not in facts.sockets:
        reason = f"pool {pool.name} should listen on {path}, but the file is not there"
        return Outcome(MISSING, pool.name, (reason + ": is PHP-FPM running?",), tuple(assumed))
    wanted, problems = socket_from_config(pool, facts.accounts_of_fpm)
    if wanted is None:
        return Outcome(REJECTED, pool.name, (), tuple(assumed), tuple(problems))
    if not facts.live:
        assumed.append(f"PHP-FPM runs as root and (re)created {path} at its last restart")
    reasons = _stale_socket(pool, path, wanted, facts)
    actual = facts.sockets.get(path, wanted)
    allowed = may_access(worker, actual, 2)
    groups = ",".join(sorted(facts.nginx_accounts.group_name(g) for g in worker.groups))
    verdict = "may write" if allowed else "may not write"
    text = describe_mode(actual, facts.accounts_of_fpm)
    reasons.append(
        f"{worker.user} (uid {worker.uid}, groups {groups}) {verdict} to {path} ({text})"
    )
    return Outcome(OK if allowed else DENIED, pool.name, tuple(reasons), tuple(assumed))


def _listens_on(pool: Pool, path: str) -> bool:
    listen = pool.listen
    return bool(listen) and not is_tcp(listen or "") and canonical_socket(listen or "") == path


def _unix_without_pool(path: str, worker: Worker, facts: Facts, assumed: list[str]) -> Outcome:
    live = facts.sockets.get(path)
    if live is None:
        if not facts.live:
            assumed.append(f"no other program creates {path}; check with `ls -l {path}`")
        reason = f"no pool listens on {path}, so the file Nginx opens does not exist"
        return Outcome(MISSING, None, (reason,), tuple(assumed))
    text = describe_mode(live, facts.accounts_of_fpm)
    if not may_access(worker, live, 2):
        reason = f"{path} exists ({text}) but {worker.user} may not write to it"
        return Outcome(DENIED, None, (reason,), tuple(assumed))
    reason = f"{path} exists ({text}) but no pool in this configuration listens on it (stale)"
    return Outcome(REFUSED, None, (reason,), tuple(assumed))


def _stale_socket(pool: Pool, path: str, wanted: FileMode, facts: Facts) -> list[str]:
    """Say so when the socket on disk is not what the pool asks for (field case R04)."""
    live = facts.sockets.get(path)
    if live is None or live == wanted:
        return []
    accounts = facts.accounts_of_fpm
    return [
        f"the socket on disk is {describe_mode(live, accounts)} but pool {pool.name} asks for "
        f"{describe_mode(wanted, accounts)}: PHP-FPM was reloaded, not restarted, and a reload "
        "keeps the old socket; restart PHP-FPM"
    ]


def _blocked_directory(path: str, worker: Worker, facts: Facts) -> tuple[str, list[str]]:
    """Return why a directory on the way blocks the worker (search permission), or ""."""
    directories = []
    directory = posixpath.dirname(path)
    while directory not in directories:
        directories.append(directory)
        directory = posixpath.dirname(directory)
    for directory in reversed(directories):
        mode = facts.directories.get(directory)
        if mode is not None and not may_access(worker, mode, 1):
            text = describe_mode(mode, facts.accounts_of_fpm)
            reason = f"{worker.user} may not search {directory} ({text}), so it cannot reach {path}"
            return reason, []
    if posixpath.dirname(path) in facts.directories:
        return "", []
    note = (
        f"the directories above {path} are assumed searchable by {worker.user}; "
        f"check with `namei -l {path}`"
    )
    return "", [note]


def _dial_tcp(address: str, port: int, sides: list[FpmSide], facts: Facts) -> Outcome:
    assumed: list[str] = []
    if facts.jail_address and _is_loopback(address):
        assumed.append(f"in the jail, {address} stands for the jail's address {facts.jail_address}")
        address = facts.jail_address
    host = _host_of(address, facts, assumed)
    if host == "nginx" and facts.topology == "network":
        reason = f"{address}:{port} is Nginx's own host, where PHP-FPM does not run"
        assumed.append(f"nothing else listens on port {port} where Nginx runs")
        return Outcome(REFUSED, None, (reason,), tuple(assumed))
    if _is_ip(address) and ipaddress.ip_address(address).version == 6 and facts.ipv6 != "on":
        return Outcome(
            UNKNOWN,
            None,
            (f"Nginx cannot dial {address}: IPv6 is {facts.ipv6} here",),
            tuple(assumed),
        )
    for pool in _pools(sides):
        listen = pool.listen
        if not listen or not is_tcp(listen):
            continue
        pool_host, pool_port = split_listen(listen)
        if pool_port != str(port) or not _covers(pool_host, address, facts, assumed):
            continue
        return _allowed(pool, address, pool_host, facts, assumed)
    reason = f"no pool listens on {address}:{port}" + (
        " (PHP-FPM's host)" if facts.topology == "network" else ""
    )
    assumed.append(f"nothing else listens on port {port} there")
    return Outcome(REFUSED, None, (reason,), tuple(assumed))


def _host_of(address: str, facts: Facts, assumed: list[str]) -> str:
    if address == FPM_HOST or address in facts.fpm_addresses:
        return "fpm"
    if address == NGINX_HOST or _is_loopback(address) or address in facts.nginx_addresses:
        return "nginx" if facts.topology == "network" else "fpm"
    if facts.topology == "network":
        assumed.append(f"{address} is taken to be PHP-FPM's host")
    return "fpm"


def _covers(pool_host: str | None, address: str, facts: Facts, assumed: list[str]) -> bool:
    """Tell whether a socket bound by `listen` takes connections to `address` on its host."""
    family = ipaddress.ip_address(address).version if _is_ip(address) else 4
    if pool_host in (None, "*"):
        return family == 4 or facts.ipv6 == "on"
    if pool_host == "0.0.0.0":
        return family == 4
    if pool_host == "::":
        # Linux's default (bindv6only=0) lets `::` take IPv4 connections too.
        return facts.ipv6 != "absent"
    bound = _fpm_address(pool_host, facts)
    if bound == FPM_HOST:
        assumed.append(f"`listen` host {pool_host} is taken to be PHP-FPM's own address")
        return not _is_loopback(address)
    return bound == (str(ipaddress.ip_address(address)) if _is_ip(address) else address)


def _allowed(
    pool: Pool, address: str, pool_host: str | None, facts: Facts, assumed: list[str]
) -> Outcome:
    clients = pool.get("listen.allowed_clients")
    if clients is None:
        return Outcome(
            OK, pool.name, (f"pool {pool.name} listens on {pool.listen}",), tuple(assumed)
        )
    allowed = [ipaddress.ip_address(item) for item in clients.split(",") if _is_strict_ip(item)]
    source = _source_address(address, facts)
    where = pool.settings["listen.allowed_clients"].origin
    if not allowed:
        reason = (
            f"{where}: no valid address in listen.allowed_clients = {clients!r}, "
            "so PHP-FPM drops every client"
        )
        return Outcome(NOT_ALLOWED, pool.name, (reason,), tuple(assumed))
    if source in (NGINX_HOST,):
        if all(a.is_loopback for a in allowed):
            reason = (
                "Nginx connects from its own address, which listen.allowed_clients "
                f"({clients}) does not list"
            )
            return Outcome(NOT_ALLOWED, pool.name, (reason,), tuple(assumed))
        assumed.append(
            f"Nginx's address is assumed to be in listen.allowed_clients ({clients}); "
            "check the address Nginx connects from"
        )
        return Outcome(OK, pool.name, (), tuple(assumed))
    dual = pool_host in (None, "::", "*") and facts.ipv6 != "absent"
    if _client_matches(ipaddress.ip_address(source), allowed, dual):
        return Outcome(
            OK,
            pool.name,
            (f"Nginx connects from {source}, which listen.allowed_clients lists",),
            tuple(assumed),
        )
    reason = (
        f"Nginx connects from {source}, which listen.allowed_clients "
        f"({clients}, {where}) does not list"
    )
    return Outcome(NOT_ALLOWED, pool.name, (reason,), tuple(assumed))


def _is_strict_ip(text: str) -> bool:
    # fcgi_set_allowed_clients() gives each item to inet_pton() as it is: no trimming.
    return _is_ip(text) and "%" not in text and text == text.strip()


def _client_matches(
    source: ipaddress.IPv4Address | ipaddress.IPv6Address,
    allowed: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    dual: bool,
) -> bool:
    if source.version == 4 and dual:
        # The peer of a dual-stack socket is ::ffff:a.b.c.d, compared with IPv4 entries by its
        # last four bytes and with IPv6 entries as it is (fcgi_is_allowed in main/fastcgi.c).
        mapped = ipaddress.IPv6Address("::ffff:" + str(source))
        return any(a == source or a == mapped for a in allowed)
    return source in allowed


def _source_address(address: str, facts: Facts) -> str:
    """Return the source address PHP-FPM sees for Nginx's connection to `address`."""
    if _is_loopback(address):
        return "::1" if ipaddress.ip_address(address).version == 6 else "127.0.0.1"
    if facts.topology == "pod":
        # On one host the kernel uses the dialled local address as the source.
        return address if address != FPM_HOST else NGINX_HOST
    return facts.nginx_addresses[0] if facts.nginx_addresses else NGINX_HOST
