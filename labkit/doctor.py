"""labkit doctor: read Nginx and PHP-FPM configuration as a server holds it, and predict the answer.

For every `fastcgi_pass` the doctor names the pool it reaches (or none) and the cause Nginx
would meet, in the vocabulary `labkit.diagnose.Cause` reads from real logs: `ok`,
`socket-permission-denied`, `socket-missing`, `connection-refused`, `client-not-allowed`; or
`config-rejected` when `nginx -t`, `php-fpm -t` or PHP-FPM's start-up refuses the text. A
finding comes with a fix: edits to the files that the doctor has applied to a copy of the
configuration and read again, and that then predict `ok`.

    report = examine("/etc/nginx", ["/etc/php/8.2/fpm"], default_facts())
    print(report.text())
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from labkit.doctor_files import Origin, Tree
from labkit.doctor_fpm import WRAPPER_NAME, FpmSide, Pool, read_fpm
from labkit.doctor_nginx import FastcgiPass, NginxSide, Rejection, read_nginx
from labkit.doctor_rules import (
    DENIED,
    MISSING,
    NOT_ALLOWED,
    OK,
    REFUSED,
    REJECTED,
    UNKNOWN,
    Accounts,
    Facts,
    FileMode,
    Outcome,
    Worker,
    canonical_socket,
    describe_mode,
    dial,
    fpm_start_problems,
    is_tcp,
    nginx_worker,
    pass_targets,
    socket_from_config,
    split_listen,
)
from labkit.errors import DoctorInputError

__all__ = [
    "Accounts",
    "Edit",
    "Facts",
    "FileMode",
    "Finding",
    "Fix",
    "Report",
    "default_facts",
    "examine",
    "facts_from_options",
    "live_facts",
]

FIX_ROUNDS = 3
FIX_BEAM = 4
_NGINX_INCLUDE = re.compile(r"^\s*include\s+([^;\s]+)\s*;", re.MULTILINE)
_FPM_INCLUDE = re.compile(r"^\s*include\s*=\s*(\S+)", re.MULTILINE)
_FPM_DIR = re.compile(r".*/php/(\d+\.\d+)/fpm")


@dataclass(frozen=True)
class Edit:
    """One line changed, or one line added after `line`, in a configuration file."""

    file: str
    line: int
    old: str
    new: str
    insert: bool = False

    def __str__(self) -> str:
        if self.insert:
            return f"{self.file}: after line {self.line} add: {self.new.strip()}"
        return f"{self.file}:{self.line}: {self.old.strip()}  ->  {self.new.strip()}"


@dataclass(frozen=True)
class Fix:
    """Edits the doctor applied to a copy of the configuration and found to predict `ok`."""

    summary: str
    edits: tuple[Edit, ...]
    then: tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    """The prediction for one `fastcgi_pass`."""

    server: str
    location: str
    fastcgi_pass: str
    origin: Origin
    pool: str | None
    cause: str
    reasons: tuple[str, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    fix: Fix | None = None

    @property
    def key(self) -> tuple[str, int]:
        """The file and line of the `fastcgi_pass`, stable across fixes that edit values."""
        return (self.origin.file, self.origin.line)


@dataclass(frozen=True)
class PoolSummary:
    """A pool as PHP-FPM would run it: where it listens and how its socket looks."""

    name: str
    listen: str
    origin: Origin
    socket: str
    master: str


@dataclass(frozen=True)
class Report:
    """Everything the doctor found, ready to print or to serialise."""

    nginx: str
    fpm: tuple[str, ...]
    worker: str
    pools: tuple[PoolSummary, ...]
    findings: tuple[Finding, ...]
    rejections: tuple[Rejection, ...]
    assumptions: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether every `fastcgi_pass` is predicted to work and nothing is refused."""
        return not self.rejections and all(f.cause == OK for f in self.findings)

    def finding(self, key: tuple[str, int]) -> Finding | None:
        """Return the finding for the `fastcgi_pass` at `key`, if there is one."""
        return next((f for f in self.findings if f.key == key), None)

    def causes(self) -> list[str]:
        """Return the predicted cause of every `fastcgi_pass`, in file order."""
        return [f.cause for f in self.findings]

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready form of the report."""

        def finding(f: Finding) -> dict[str, object]:
            return {
                "server": f.server,
                "location": f.location,
                "fastcgi_pass": f.fastcgi_pass,
                "origin": str(f.origin),
                "pool": f.pool,
                "cause": f.cause,
                "reasons": list(f.reasons),
                "rejections": [str(r) for r in f.rejections],
                "fix": None
                if f.fix is None
                else {
                    "summary": f.fix.summary,
                    "edits": [vars(e) for e in f.fix.edits],
                    "then": list(f.fix.then),
                    "checked": True,
                },
            }

        return {
            "nginx": self.nginx,
            "fpm": list(self.fpm),
            "ok": self.ok,
            "worker": self.worker,
            "pools": [{**vars(p), "origin": str(p.origin)} for p in self.pools],
            "findings": [finding(f) for f in self.findings],
            "rejections": [str(r) for r in self.rejections],
            "assumptions": list(self.assumptions),
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        """Return the report as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def text(self) -> str:
        """Return the report as a person reads it in a terminal."""
        lines = [
            f"Nginx:   {self.nginx}",
            f"PHP-FPM: {', '.join(self.fpm)}",
            f"Nginx workers: {self.worker}",
        ]
        lines.append("Pools:")
        lines += [f"  [{p.name}] listen = {p.listen}  {p.socket}  ({p.origin})" for p in self.pools]
        lines += ["  (none)"] if not self.pools else []
        for f in self.findings:
            lines += [
                "",
                f"{f.server} / {f.location}",
                f"  fastcgi_pass {f.fastcgi_pass}  ({f.origin})",
            ]
            lines.append(f"  => {f.cause}" + (f" (pool {f.pool})" if f.pool else ""))
            lines += [f"     {r}" for r in f.reasons]
            lines += [f"     {r}" for r in f.rejections]
            if f.fix is not None:
                lines.append(f"  fix, checked by the doctor: {f.fix.summary}")
                lines += [f"     {e}" for e in f.fix.edits]
                lines += [f"     then {t}" for t in f.fix.then]
        if not self.findings:
            lines += ["", "No location passes requests to PHP-FPM (no fastcgi_pass)."]
        other = [r for r in self.rejections if not any(r in f.rejections for f in self.findings)]
        lines += ["", "Refused:"] + [f"  {r}" for r in other] if other else []
        lines += (
            ["", "Assumed:"] + [f"  - {a}" for a in self.assumptions] if self.assumptions else []
        )
        lines += ["", "Notes:"] + [f"  - {n}" for n in self.notes] if self.notes else []
        return "\n".join(lines)


def default_facts(
    passwd: str = "/etc/passwd",
    group: str = "/etc/group",
    topology: str = "pod",
    nginx_user: str | None = None,
) -> Facts:
    """Return the facts of this machine: its accounts, and one host unless told otherwise.

    Raises:
        DoctorInputError: The passwd or group file cannot be read or is not one.
    """
    return facts_from_options(passwd, group, None, None, topology, nginx_user)


def facts_from_options(
    passwd: str,
    group: str,
    fpm_passwd: str | None,
    fpm_group: str | None,
    topology: str,
    nginx_user: str | None,
) -> Facts:
    """Build facts from the command line's options.

    Args:
        passwd: The passwd file of Nginx's machine.
        group: Its group file.
        fpm_passwd: PHP-FPM's passwd file, when it runs on another machine (else None).
        fpm_group: PHP-FPM's group file (else None: `group`).
        topology: ``pod`` or ``network``.
        nginx_user: `user` or `user:group` to use instead of Nginx's `user` directive.

    Raises:
        DoctorInputError: A file cannot be read or holds no accounts; a bad topology.
    """
    if topology not in ("pod", "network"):
        raise DoctorInputError(topology, "topology must be `pod` (one host) or `network`")
    accounts = Accounts.from_text(_read_small(passwd), _read_small(group), f"{passwd}, {group}")
    fpm_accounts = None
    if fpm_passwd or fpm_group:
        fpm_passwd, fpm_group = fpm_passwd or passwd, fpm_group or group
        source = f"{fpm_passwd}, {fpm_group}"
        fpm_accounts = Accounts.from_text(_read_small(fpm_passwd), _read_small(fpm_group), source)
    user = nginx_user.replace(":", " ") if nginx_user else None
    if user is not None and (not user.strip() or len(user.split()) > 2):
        raise DoctorInputError(str(nginx_user), "--nginx-user must be USER or USER:GROUP")
    return Facts(accounts, fpm_accounts, topology=topology, nginx_user=user)


def live_facts(facts: Facts, paths: Sequence[str]) -> Facts:
    """Add what this machine shows now: each socket file and the directories above it."""
    sockets = dict(facts.sockets)
    directories = dict(facts.directories)
    for path in paths:
        socket_mode = _stat_mode(path)
        if socket_mode is not None:
            sockets[canonical_socket(path)] = socket_mode
        directory = posixpath.dirname(canonical_socket(path))
        while directory not in directories:
            found = _stat_mode(directory)
            if found is not None:
                directories[directory] = found
            if directory == "/":
                break
            directory = posixpath.dirname(directory)
    return replace(facts, sockets=sockets, directories=directories, live=True)


def examine(
    nginx: str | Path,
    fpm: Sequence[str | Path] | str | Path,
    facts: Facts,
    fixes: bool = True,
    live: bool = False,
) -> Report:
    """Read both configurations and predict, per `fastcgi_pass`, what Nginx gets.

    Args:
        nginx: Nginx's main file, or a directory holding nginx.conf (a copy is fine).
        fpm: php-fpm.conf, a directory holding it, or a pool file; several for several
            masters (PHP versions).
        facts: Accounts, topology and addresses; see `default_facts`.
        fixes: Search for a checked fix for every finding that is not `ok`.
        live: Read the sockets and their directories from this machine first.

    Raises:
        DoctorInputError: A path is missing, unreadable, binary, huge, or not configuration.
    """
    fpm_paths = [fpm] if isinstance(fpm, str | Path) else list(fpm)
    if not fpm_paths:
        raise DoctorInputError("--fpm", "give at least one PHP-FPM configuration path")
    with ExitStack() as stack:
        nginx_tree, nginx_main, notes = _open_nginx(str(nginx))
        stack.callback(nginx_tree.close)
        masters = []
        for path in fpm_paths:
            tree, main, more = _open_fpm(str(path))
            stack.callback(tree.close)
            masters.append((tree, main))
            notes += more
        session = _Session(nginx_tree, nginx_main, masters, facts, notes)
        if live:
            session.facts = live_facts(facts, session.socket_paths())
        try:
            report = session.report({})
        except DoctorInputError as error:
            shown = zip(masters, fpm_paths, strict=True)
            given = {nginx_main: str(nginx), **{main: str(p) for (_, main), p in shown}}
            if error.path in given:
                raise DoctorInputError(given[error.path], error.reason) from error
            raise
        return session.with_fixes(report) if fixes else report


# Opening the trees


def _open_nginx(path: str) -> tuple[Tree, str, list[str]]:
    local = _existing(path)
    if local.is_dir():
        main_local = local / "nginx.conf"
        if not main_local.exists():
            raise DoctorInputError(
                path,
                "no nginx.conf in this directory: give the main file "
                "(`nginx -V` shows --conf-path)",
            )
        root_local = local
    else:
        main_local, root_local = local, local.parent
    text = _read_small(str(main_local))
    server_root, notes = _server_root(root_local, _NGINX_INCLUDE.findall(text), "/etc/nginx")
    tree = Tree(root_local, server_root, read_outside=server_root == str(root_local.resolve()))
    return tree, posixpath.join(server_root, main_local.name), notes


def _open_fpm(path: str) -> tuple[Tree, str, list[str]]:
    local = _existing(path)
    if local.is_dir():
        main_local = next((local / n for n in ("php-fpm.conf",) if (local / n).is_file()), None)
        root_local = local
    else:
        main_local, root_local = local, local.parent
    found = _FPM_DIR.fullmatch(str(root_local.resolve()))
    default = f"/etc/php/{found.group(1)}/fpm" if found else str(root_local.resolve())
    text = _read_small(str(main_local)) if main_local else ""
    server_root, notes = _server_root(root_local, _FPM_INCLUDE.findall(text), default)
    tree = Tree(root_local, server_root, read_outside=server_root == str(root_local.resolve()))
    if main_local is None:
        return _pool_directory(tree, path, notes)
    main = posixpath.join(server_root, main_local.name)
    if "[global]" not in text.lower() and "include" not in text:
        # A lone pool file: read it as php-fpm.conf would include it.
        notes.append(f"{path} was read as a pool file included by a php-fpm.conf not given")
        wrapper = posixpath.join(server_root, WRAPPER_NAME)
        tree = tree.with_overlay({wrapper: f"[global]\ninclude={main}\n"})
        return tree, wrapper, notes
    return tree, main, notes


def _pool_directory(tree: Tree, path: str, notes: list[str]) -> tuple[Tree, str, list[str]]:
    pools = [p for p in Path(path).glob("*.conf")]
    if not pools:
        raise DoctorInputError(path, "no php-fpm.conf and no *.conf pool file in this directory")
    notes.append(f"{path} has no php-fpm.conf; its *.conf files were read as its pools")
    wrapper = posixpath.join(tree.server_root, WRAPPER_NAME)
    text = f"[global]\ninclude={tree.server_root}/*.conf\n"
    return tree.with_overlay({wrapper: text}), wrapper, notes


def _server_root(local: Path, includes: list[str], default: str) -> tuple[str, list[str]]:
    """Tell what a copied tree is called on its server, from the absolute includes in it."""
    real = str(local.resolve())
    for pattern in includes:
        parts = [p for p in pattern.split("/") if p]
        if not pattern.startswith("/") or len(parts) < 2:
            continue
        directory = parts[:-1]
        for index in range(1, len(directory)):
            if (local.joinpath(*directory[index:])).is_dir():
                root = "/" + "/".join(directory[:index])
                if root == real:
                    return root, []
                return root, [f"{real} was read as {root} (the path its includes name)"]
    if default == real:
        return real, []
    return default, [f"{real} was read as {default}"]


def _existing(path: str) -> Path:
    local = Path(path)
    if not os.path.lexists(local):
        raise DoctorInputError(path, "no such file or directory")
    try:
        os.stat(local)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DoctorInputError(path, "a symbolic-link loop") from error
        raise DoctorInputError(path, f"a symbolic link to nothing ({error.strerror})") from error
    if not os.access(local, os.R_OK):
        raise DoctorInputError(path, "permission denied (run as a user who can read it)")
    return local


def _read_small(path: str) -> str:
    local = Path(path)
    tree = Tree(local.parent, str(local.parent), read_outside=True)
    return tree.read(str(local))


def _stat_mode(path: str) -> FileMode | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    users, groups = _acl_entries(path)
    return FileMode(info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode), users, groups)


def _acl_entries(path: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return the named users and groups with write access in a file's POSIX ACL."""
    try:
        data = os.getxattr(path, "system.posix_acl_access")
    except OSError:
        return (), ()
    users, groups = [], []
    # Linux's xattr form: a 4-byte version, then 8-byte entries (tag, permissions, id).
    for offset in range(4, len(data) - 7, 8):
        tag = int.from_bytes(data[offset : offset + 2], "little")
        perm = int.from_bytes(data[offset + 2 : offset + 4], "little")
        ident = int.from_bytes(data[offset + 4 : offset + 8], "little")
        if perm & 2 and tag == 0x02:
            users.append(ident)
        elif perm & 2 and tag == 0x08:
            groups.append(ident)
    return tuple(users), tuple(groups)


# Predicting


@dataclass
class _Result:
    report: Report
    nginx: NginxSide
    masters: list[FpmSide]
    worker: Worker | None
    texts: Callable[[str], str]


@dataclass
class _Session:
    nginx_tree: Tree
    nginx_main: str
    masters: list[tuple[Tree, str]]
    facts: Facts
    notes: list[str] = field(default_factory=list)

    def socket_paths(self) -> list[str]:
        """Return every unix socket path named on either side, for `live_facts`."""
        with self._trees({}) as (nginx_tree, trees):
            side = read_nginx(nginx_tree, self.nginx_main)
            sides = [
                read_fpm(tree, main) for tree, (_, main) in zip(trees, self.masters, strict=True)
            ]
        paths = [p.value[len("unix:") :] for p in side.passes if p.value.startswith("unix:")]
        paths += [p.listen for s in sides for p in s.pools if p.listen and not is_tcp(p.listen)]
        return paths

    def report(self, overlay: dict[str, str]) -> Report:
        """Predict from the trees with `overlay` (server path to text) laid over them."""
        return self.result(overlay).report

    @contextmanager
    def _trees(self, overlay: dict[str, str]) -> Iterator[tuple[Tree, list[Tree]]]:
        nginx_tree = self.nginx_tree.with_overlay(overlay)
        trees = [tree.with_overlay(overlay) for tree, _ in self.masters]
        try:
            yield nginx_tree, trees
        finally:
            for tree in (nginx_tree, *trees):
                tree.close()

    def result(self, overlay: dict[str, str]) -> _Result:
        """Like `report`, keeping what was read for the fix search."""
        with self._trees(overlay) as (nginx_tree, trees):
            side = read_nginx(nginx_tree, self.nginx_main)
            sides = [
                read_fpm(tree, main) for tree, (_, main) in zip(trees, self.masters, strict=True)
            ]
            texts = _text_reader([nginx_tree, *trees])
            return _predict(side, sides, self.facts, self.notes, texts)

    def with_fixes(self, report: Report) -> Report:
        """Return `report` with a checked fix on every finding that is not `ok`."""
        findings = []
        for finding in report.findings:
            fix = None if finding.cause == OK else self._search_fix(finding.key)
            findings.append(replace(finding, fix=fix))
        return replace(report, findings=tuple(findings))

    def _search_fix(self, key: tuple[str, int]) -> Fix | None:
        """Try candidate edits, re-reading the changed configuration, until one predicts ok."""
        beam: list[tuple[tuple[Edit, ...], _Result]] = [((), self.result({}))]
        for _ in range(FIX_ROUNDS):
            next_beam = []
            for edits, result in beam:
                finding = result.report.finding(key)
                if finding is None:
                    continue
                for candidate in _candidates(finding, result, self.facts):
                    combined = edits + tuple(e for e in candidate if e not in edits)
                    try:
                        changed = self.result(_apply_edits(combined, result.texts))
                    except DoctorInputError:
                        continue
                    after = changed.report.finding(key)
                    if after is None:
                        continue
                    if after.cause == OK and not changed.report.rejections:
                        return self._fix(combined)
                    if (after.cause, after.rejections) != (finding.cause, finding.rejections):
                        next_beam.append((combined, changed))
            beam = next_beam[:FIX_BEAM]
        return self._restart_fix(key)

    def _restart_fix(self, key: tuple[str, int]) -> Fix | None:
        """A socket left over from a reload needs a restart, not an edit (field case R04)."""
        if not self.facts.sockets:
            return None
        result = self.result({})
        finding = result.report.finding(key)
        if finding is None or not any("reloaded, not restarted" in r for r in finding.reasons):
            return None
        fresh = replace(self.facts, sockets={}, live=False)
        again = _predict(result.nginx, result.masters, fresh, self.notes, result.texts)
        after = again.report.finding(key)
        if after is None or after.cause != OK:
            return None
        return Fix("restart PHP-FPM so that it creates the socket again", (), _RESTART)

    def _fix(self, edits: tuple[Edit, ...]) -> Fix:
        nginx = any(
            self.nginx_tree.is_inside(e.file) and e.file.startswith(self.nginx_tree.server_root)
            for e in edits
        )
        fpm = any(not e.file.startswith(self.nginx_tree.server_root) for e in edits)
        then = (_RESTART if fpm else ()) + (_RELOAD if nginx else ())
        return Fix("; ".join(e.new.strip() for e in edits), edits, then)


_RESTART = ("restart PHP-FPM (e.g. `systemctl restart php8.2-fpm`): a reload keeps the old socket",)
_RELOAD = ("check and reload Nginx: `nginx -t && nginx -s reload`",)


def _text_reader(trees: list[Tree]) -> Callable[[str], str]:
    def read(path: str) -> str:
        owner = max(
            (t for t in trees if t.is_inside(path)), key=lambda t: len(t.server_root), default=None
        )
        if owner is None:
            raise DoctorInputError(path, "outside the configuration trees")
        return owner.read(path)

    return read


def _predict(
    side: NginxSide,
    sides: list[FpmSide],
    facts: Facts,
    notes: list[str],
    texts: Callable[[str], str],
) -> _Result:
    worker, worker_problems, assumed = nginx_worker(side, facts)
    assumed.insert(0, _accounts_note(facts))
    targets = {}
    nginx_problems = list(side.rejections) + worker_problems
    for item in side.passes:
        found, problems, more = pass_targets(item, side, facts)
        targets[item.origin] = found
        nginx_problems += [p for p in problems if p not in nginx_problems]
        assumed += more
    down = _masters_down(sides, facts)
    findings = []
    for item in side.passes:
        outcome = _outcome(item, targets[item.origin], worker, nginx_problems, sides, down, facts)
        assumed += [a for a in outcome.assumptions if a not in assumed]
        findings.append(
            Finding(
                item.server,
                item.location,
                item.value,
                item.origin,
                outcome.pool,
                outcome.cause,
                outcome.reasons,
                outcome.rejections,
            )
        )
    rejections = nginx_problems + [r for problems in down.values() for r in problems]
    hints = _hints(side, worker, sides, facts) if worker is not None else ()
    report = Report(
        side.main,
        tuple(s.main for s in sides),
        _describe_worker(worker, facts),
        tuple(_summaries(sides, facts)),
        tuple(findings),
        tuple(dict.fromkeys(rejections)),
        tuple(dict.fromkeys(assumed)),
        tuple(notes) + side.warnings + tuple(w for s in sides for w in s.warnings) + hints,
    )
    return _Result(report, side, sides, worker, texts)


def _masters_down(sides: list[FpmSide], facts: Facts) -> dict[int, list[Rejection]]:
    """Return, per master, what stops it: its config test, its sockets, or its start-up."""
    down: dict[int, list[Rejection]] = {}
    starts = fpm_start_problems(sides, facts)
    for index, side in enumerate(sides):
        problems = list(side.rejections)
        origins = {s.origin for pool in side.pools for s in pool.settings.values()}
        for pool in side.pools:
            if pool.listen and not is_tcp(pool.listen):
                problems += socket_from_config(pool, facts.accounts_of_fpm)[1]
        problems += [r for r in starts if r.origin in origins]
        if problems:
            down[index] = list(dict.fromkeys(problems))
    return down


def _outcome(
    item: FastcgiPass,
    targets: list[tuple[str, str]],
    worker: Worker | None,
    nginx_problems: list[Rejection],
    sides: list[FpmSide],
    down: dict[int, list[Rejection]],
    facts: Facts,
) -> Outcome:
    if nginx_problems or worker is None:
        return Outcome(
            REJECTED,
            None,
            ("`nginx -t` fails, so Nginx keeps (or cannot start with) this configuration",),
            (),
            tuple(nginx_problems),
        )
    if not targets:
        return Outcome(UNKNOWN, None, ("the address is only known per request",))
    running = [side for index, side in enumerate(sides) if index not in down]
    outcomes = [dial(target, worker, running, facts) for target in targets]
    best = next((o for o in outcomes if o.cause == OK), outcomes[0])
    if best.cause in (MISSING, REFUSED) and down:
        stopped = [r for problems in down.values() for r in problems]
        symptom = "socket-missing" if targets[0][0] == "unix" else "connection-refused"
        reason = f"PHP-FPM refuses its configuration, so until it is fixed Nginx gets {symptom}"
        return Outcome(REJECTED, None, (reason,), best.assumptions, tuple(stopped))
    if best.cause == OK and len(outcomes) > 1:
        failing = [o.cause for o in outcomes if o.cause != OK]
        if failing:
            note = (
                f"Nginx tries {len(outcomes)} addresses; the failing ones "
                f"({', '.join(failing)}) add error lines to its log"
            )
            return replace(best, reasons=(*best.reasons, note))
    return best


def _accounts_note(facts: Facts) -> str:
    fpm = facts.fpm_accounts
    where = f"Nginx's from {facts.nginx_accounts.source}" + (
        f", PHP-FPM's from {fpm.source}" if fpm else ""
    )
    return (
        f"accounts: {where}; if the configuration comes from another server, give its files "
        "with --passwd/--group (and --fpm-passwd/--fpm-group)"
    )


def _describe_worker(worker: Worker | None, facts: Facts) -> str:
    if worker is None:
        return "unknown (the `user` directive names an account this machine lacks)"
    accounts = facts.nginx_accounts
    groups = ", ".join(sorted(accounts.group_name(g) for g in worker.groups))
    return (
        f"{worker.user} (uid {worker.uid}, gid {worker.gid}; groups {groups}) per {accounts.source}"
    )


def _summaries(sides: list[FpmSide], facts: Facts) -> Iterator[PoolSummary]:
    accounts = facts.accounts_of_fpm
    for side in sides:
        for pool in side.pools:
            listen = pool.listen or "(none)"
            if pool.listen and not is_tcp(pool.listen):
                mode, _ = socket_from_config(pool, accounts)
                socket = (
                    "socket " + describe_mode(mode, accounts) if mode else "socket owner unknown"
                )
            else:
                clients = pool.get("listen.allowed_clients")
                socket = "TCP" + (f", allowed_clients {clients}" if clients is not None else "")
            yield PoolSummary(pool.name, listen, pool.origin, socket, side.main)


def _hints(
    side: NginxSide, worker: Worker | None, sides: list[FpmSide], facts: Facts
) -> tuple[str, ...]:
    """Say what each commented-out `fastcgi_pass` would give if enabled as written.

    Debian's stock site ships its PHP block commented out, naming another PHP version's socket.
    """
    if side.passes:
        return ()
    hints = []
    for value, origin in side.commented_passes:
        item = FastcgiPass(value, origin, "", "")
        targets, problems, _ = pass_targets(item, side, facts)
        outcome = _outcome(item, targets, worker, problems, sides, {}, facts)
        because = f": {outcome.reasons[-1]}" if outcome.reasons else ""
        hints.append(
            f"{origin}: `fastcgi_pass {value};` is commented out, so no location reaches "
            f"PHP-FPM; enabled as written it would give {outcome.cause}{because}"
        )
    return tuple(hints)


# Fixes


def _candidates(finding: Finding, result: _Result, facts: Facts) -> list[list[Edit]]:
    """Return edits worth trying for a finding, most specific first."""
    pools = [p for side in result.masters for p in side.pools]
    pool = next((p for p in pools if p.name == finding.pool), None)
    if finding.cause == REJECTED:
        return _rejection_candidates(finding, result, facts)
    if finding.cause == DENIED and pool is not None and result.worker is not None:
        return _permission_candidates(pool, result.worker, result, facts)
    if finding.cause in (MISSING, REFUSED):
        return _address_candidates(finding, result, facts)
    if finding.cause == NOT_ALLOWED and pool is not None:
        return _client_candidates(finding, pool, result, facts)
    return []


def _permission_candidates(
    pool: Pool, worker: Worker, result: _Result, facts: Facts
) -> list[list[Edit]]:
    # The socket carries numbers: name the worker's group as PHP-FPM's machine knows it.
    fpm = facts.accounts_of_fpm
    group = facts.nginx_accounts.group_name(worker.gid)
    group = group if fpm.gid(group) == worker.gid else str(worker.gid)
    user = worker.user if fpm.uid(worker.user) == worker.uid else str(worker.uid)
    if pool.get("listen.acl_users") or pool.get("listen.acl_groups"):
        users = pool.get("listen.acl_users")
        value = f"{users},{user}" if users else user
        return [[_set(pool, "listen.acl_users", value, result)]]
    return [
        [_set(pool, "listen.group", group, result)],
        [
            _set(pool, "listen.owner", user, result),
            _set(pool, "listen.group", group, result),
        ],
    ]


# Limitation: with --topology network, candidate fixes may name the lab's host `php`, which a
# server's own files need not know.
def _address_candidates(finding: Finding, result: _Result, facts: Facts) -> list[list[Edit]]:
    candidates = []
    item = next(p for p in result.nginx.passes if p.origin == finding.origin)
    for side in result.masters:
        for pool in side.pools:
            for value in _pass_values(pool, facts):
                edit = _pass_edit(item, value, result)
                if edit is not None:
                    candidates.append([edit])
            listen = _listen_for(finding.fastcgi_pass, facts)
            if listen:
                candidates.append([_set(pool, "listen", listen, result)])
            if pool.listen and is_tcp(pool.listen) and facts.topology == "network":
                port = split_listen(pool.listen)[1]
                edit = _pass_edit(item, f"{_fpm_name(facts)}:{port}", result)
                if edit is not None:
                    candidates.append([_set(pool, "listen", port, result), edit])
    return candidates


def _pass_values(pool: Pool, facts: Facts) -> list[str]:
    listen = pool.listen
    if not listen:
        return []
    if not is_tcp(listen):
        return [f"unix:{listen}"]
    host, port = split_listen(listen)
    if facts.topology == "network":
        return (
            [f"{_fpm_name(facts)}:{port}"]
            if host in (None, "0.0.0.0", "::", "*")
            else [f"{host}:{port}"]
        )
    if host in (None, "0.0.0.0", "::", "*"):
        return [f"127.0.0.1:{port}"]
    return [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]


def _listen_for(value: str, facts: Facts) -> str:
    if value.startswith("unix:"):
        return value[len("unix:") :]
    if "$" in value or ":" not in value:
        return ""
    port = value.rpartition(":")[2]
    host = value.rpartition(":")[0]
    if facts.topology == "pod" and host in ("127.0.0.1", "localhost"):
        return f"127.0.0.1:{port}"
    return port if port.isdigit() else ""


def _fpm_name(facts: Facts) -> str:
    for name, addresses in facts.hosts.items():
        if set(addresses) & set(facts.fpm_addresses):
            return name
    return facts.fpm_addresses[0] if facts.fpm_addresses else "php"


def _client_candidates(
    finding: Finding, pool: Pool, result: _Result, facts: Facts
) -> list[list[Edit]]:
    sources = [
        r.split("Nginx connects from ", 1)[1].split(",")[0]
        for r in finding.reasons
        if "Nginx connects from " in r
    ]
    sources = [s for s in sources if s[:1].isdigit() or ":" in s]
    sources += list(facts.nginx_addresses)
    clients = pool.get("listen.allowed_clients") or ""
    return [
        [_set(pool, "listen.allowed_clients", f"{clients},{s}" if clients else s, result)]
        for s in dict.fromkeys(sources)
    ]


def _rejection_candidates(finding: Finding, result: _Result, facts: Facts) -> list[list[Edit]]:
    """Return edits for what Nginx or PHP-FPM refused, one family of reasons per helper."""
    candidates: list[list[Edit]] = []
    for rejection in finding.rejections:
        if rejection.origin is None:
            continue
        line = _line(result, rejection.origin)
        for applies, edits in _REJECTION_FIXES:
            if applies(rejection.reason, line):
                candidates += edits(rejection, line, result, facts)
                break
    return candidates


_Candidates = list[list[Edit]]


def _rewrite(rejection: Rejection, line: str, new: str) -> _Candidates:
    assert rejection.origin is not None
    return [[Edit(rejection.origin.file, rejection.origin.line, line, new)]]


def _server_to_location(rejection: Rejection, line: str, *_: object) -> _Candidates:
    # The article's `server ~ \.php$ {` inside a server means `location`.
    return _rewrite(rejection, line, line.replace("server", "location", 1))


def _hash_to_semicolon(rejection: Rejection, line: str, *_: object) -> _Candidates:
    return _rewrite(rejection, line, line.replace("#", ";", 1))


def _add_equals(rejection: Rejection, line: str, *_: object) -> _Candidates:
    return _rewrite(rejection, line, re.sub(r"^(\s*[\w.]+)\s+", r"\1 = ", line, count=1))


def _comment_out(rejection: Rejection, line: str, *_: object) -> _Candidates:
    return _rewrite(rejection, line, "# " + line.strip() + "  # removed by the fix")


def _drop_unix_prefix(rejection: Rejection, line: str, *_: object) -> _Candidates:
    return _rewrite(rejection, line, line.replace("unix:", "", 1))


def _port_only(rejection: Rejection, line: str, *_: object) -> _Candidates:
    return _rewrite(rejection, line, re.sub(r"=.*", f"= {line.rpartition(':')[2].strip()}", line))


def _nginx_user(rejection: Rejection, line: str, result: _Result, facts: Facts) -> _Candidates:
    if "www-data" not in facts.nginx_accounts.users:
        return []
    return _rewrite(rejection, line, re.sub(r"user\s+[^;]+;", "user www-data;", line))


def _own_socket(rejection: Rejection, line: str, result: _Result, facts: Facts) -> _Candidates:
    for pool in _all_pools(result):
        if "listen" in pool.settings and pool.settings["listen"].origin == rejection.origin:
            return [[_set(pool, "listen", f"/run/php/php-fpm-{pool.name}.sock", result)]]
    return []


def _reachable_pass(rejection: Rejection, line: str, result: _Result, facts: Facts) -> _Candidates:
    item = next((p for p in result.nginx.passes if p.origin == rejection.origin), None)
    if item is None:
        return []
    edits = [
        _pass_edit(item, v, result) for p in _all_pools(result) for v in _pass_values(p, facts)
    ]
    return [[edit] for edit in edits if edit is not None]


def _pool_user(rejection: Rejection, line: str, result: _Result, facts: Facts) -> _Candidates:
    pool = _pool_named_in(rejection, result)
    if pool is None or "www-data" not in facts.accounts_of_fpm.users:
        return []
    return [[_set(pool, "user", "www-data", result), _set(pool, "group", "www-data", result)]]


def _known_account(rejection: Rejection, line: str, result: _Result, facts: Facts) -> _Candidates:
    pool = _pool_named_in(rejection, result)
    if pool is None or result.worker is None:
        return []
    key = next((k for k, s in pool.settings.items() if s.origin == rejection.origin), None)
    if key is None:
        return []
    worker = result.worker
    value = worker.user if "uid" in rejection.reason else str(worker.gid)
    return [[_set(pool, key, value, result)]]


def _all_pools(result: _Result) -> list[Pool]:
    return [pool for side in result.masters for pool in side.pools]


def _pool_named_in(rejection: Rejection, result: _Result) -> Pool | None:
    return next(
        (p for p in _all_pools(result) if rejection.reason.startswith(f"[pool {p.name}]")), None
    )


_Applies = Callable[[str, str], bool]
_REJECTION_FIXES: list[tuple[_Applies, Callable[[Rejection, str, _Result, Facts], _Candidates]]] = [
    (
        lambda r, line: (
            '"server" directive is not allowed here' in r
            and re.match(r"\s*server\s+\S", line) is not None
        ),
        _server_to_location,
    ),
    (lambda r, line: "value is NULL" in r and line.lstrip().startswith("#"), _hash_to_semicolon),
    (
        lambda r, line: "value is NULL" in r and re.match(r"\s*[\w.]+\s+\S", line) is not None,
        _add_equals,
    ),
    (lambda r, line: "include loop" in r or "is duplicate" in r, _comment_out),
    (lambda r, line: "invalid port value" in r and "unix:" in line, _drop_unix_prefix),
    (lambda r, line: "IPv6" in r or "Address family" in r, _port_only),
    (
        lambda r, line: any(
            t in r for t in ("already used in", "already in use", "already listen")
        ),
        _own_socket,
    ),
    (lambda r, line: "getpwnam" in r, _nginx_user),
    (lambda r, line: "host not found" in r or "no port in upstream" in r, _reachable_pass),
    (lambda r, line: "other than root" in r or "user has not been defined" in r, _pool_user),
    (lambda r, line: "cannot get" in r, _known_account),
]


def _line(result: _Result, origin: Origin) -> str:
    lines = result.texts(origin.file).split("\n")
    return lines[origin.line - 1] if 0 < origin.line <= len(lines) else ""


def _set(pool: Pool, key: str, value: str, result: _Result) -> Edit:
    setting = pool.settings.get(key)
    if setting is not None:
        line = _line(result, setting.origin)
        indent = line[: len(line) - len(line.lstrip())]
        return Edit(setting.origin.file, setting.origin.line, line, f"{indent}{key} = {value}")
    anchor = pool.settings["listen"].origin if "listen" in pool.settings else pool.origin
    return Edit(anchor.file, anchor.line, "", f"{key} = {value}", insert=True)


def _pass_edit(item: FastcgiPass, value: str, result: _Result) -> Edit | None:
    line = _line(result, item.origin)
    new = re.sub(r"(fastcgi_pass\s+)[^;\s]+", lambda m: m.group(1) + value, line, count=1)
    if new == line:
        return None
    return Edit(item.origin.file, item.origin.line, line, new)


def _apply_edits(edits: Sequence[Edit], texts: Callable[[str], str]) -> dict[str, str]:
    overlay: dict[str, str] = {}
    for file in dict.fromkeys(e.file for e in edits):
        lines = texts(file).split("\n")
        for edit in sorted((e for e in edits if e.file == file), key=lambda e: (-e.line, e.insert)):
            if edit.insert:
                lines.insert(edit.line, edit.new)
            else:
                lines[edit.line - 1] = edit.new
        overlay[file] = "\n".join(lines)
    return overlay
