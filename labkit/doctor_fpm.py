"""Read PHP-FPM's configuration the way PHP-FPM reads it.

The rules below were read in php-src's `sapi/fpm/fpm/fpm_conf.c` (php/php-src @1851e7748d)
and checked with `php-fpm8.2 -t` on the lab image (tests/test_doctor_fpm.py):

* each line is parsed on its own as INI; `;` starts a comment, `#` does not (a `#` line, like
  any line without `=`, fails with "value is NULL for a ZEND_INI_PARSER_ENTRY");
* directive and section names match case-insensitively, except `include` and the array
  names (`env[...]`, `php_value[...]`), which are compared exactly;
* a later definition replaces an earlier one, and `$pool` is replaced by the pool's name
  when a value is set;
* `include` takes a glob, sorted; a relative pattern is read against the prefix (`/usr` for
  Debian's build, F8); a pattern that matches nothing is only a warning, but a pattern whose
  directory is missing fails; nesting deeper than five files fails, so an include loop fails.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from labkit.doctor_files import Origin, Tree, has_glob
from labkit.doctor_nginx import Rejection
from labkit.errors import DoctorInputError

# Debian builds php-fpm with --prefix=/usr: relative includes and socket paths land there.
PHP_PREFIX = "/usr"
MAX_RECURSION = 5
# The doctor's own php-fpm.conf when it is given only pool files.
WRAPPER_NAME = ".labkit-doctor-main.conf"
GLOBAL_OPTIONS = frozenset(
    """pid error_log syslog.ident syslog.facility log_buffering log_level log_limit
    emergency_restart_threshold emergency_restart_interval process_control_timeout process.max
    process.priority daemonize rlimit_files rlimit_core events.mechanism systemd_interval""".split()
)
POOL_OPTIONS = frozenset(
    """prefix user group listen listen.backlog listen.acl_users listen.acl_groups listen.owner
    listen.group listen.mode listen.allowed_clients process.priority process.dumpable pm
    pm.max_children pm.start_servers pm.min_spare_servers pm.max_spare_servers
    pm.max_spawn_rate pm.process_idle_timeout pm.max_requests pm.status_path pm.status_listen
    ping.path ping.response access.log access.format slowlog request_slowlog_timeout
    request_slowlog_trace_depth request_terminate_timeout
    request_terminate_timeout_track_finished rlimit_files rlimit_core chroot chdir
    catch_workers_output decorate_workers_output clear_env security.limit_extensions
    apparmor_hat""".split()
)
_INTEGER_OPTIONS = frozenset(
    """listen.backlog pm.max_children pm.start_servers pm.min_spare_servers pm.max_spare_servers
    pm.max_spawn_rate pm.max_requests rlimit_files process.priority
    request_slowlog_trace_depth""".split()
)
_BOOLEAN_OPTIONS = frozenset(
    """catch_workers_output decorate_workers_output clear_env process.dumpable
    request_terminate_timeout_track_finished log_buffering daemonize""".split()
)
_ARRAY_OPTIONS = frozenset(
    {"env", "php_value", "php_admin_value", "php_flag", "php_admin_flag", "access.suppress_path"}
)
_ARRAY_KEY = re.compile(r"([^\[\]]+)\[([^\]]*)\]")
_TRUE_WORDS = {"yes", "on", "true"}
_FALSE_WORDS = {"no", "off", "false", "none"}
# Characters the INI scanner evaluates as an expression outside quotes.
_EXPRESSION = set("|&~^()")


@dataclass(frozen=True)
class Setting:
    """A pool directive's value and the line that set it last."""

    value: str
    origin: Origin


@dataclass
class Pool:
    """One pool: its name (as first written) and its directives, later lines winning."""

    name: str
    origin: Origin
    settings: dict[str, Setting] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        """Return a directive's last value (name in lower case), or None when unset."""
        setting = self.settings.get(key)
        return None if setting is None else setting.value

    @property
    def listen(self) -> str | None:
        """The `listen` value as PHP-FPM uses it: a relative socket path joins the prefix."""
        value = self.get("listen")
        if not value:
            return None
        if ":" in value or value.isdigit() or value.startswith("/"):
            return value
        return posixpath.join(self.get("prefix") or PHP_PREFIX, value)


@dataclass(frozen=True)
class FpmSide:
    """What the doctor read from PHP-FPM's configuration."""

    main: str
    pools: tuple[Pool, ...]
    rejections: tuple[Rejection, ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class _Line:
    kind: str
    name: str = ""
    value: str = ""
    error: str = ""


def read_fpm(tree: Tree, main: str) -> FpmSide:
    """Read php-fpm.conf and every pool file it includes.

    Args:
        tree: The configuration tree.
        main: The main file's server path, e.g. ``/etc/php/8.2/fpm/php-fpm.conf``.

    Raises:
        DoctorInputError: A file cannot be read, or the main file is not PHP-FPM configuration.
    """
    reader = _Reader(tree)
    reader.load(main, None, ())
    given = [path for path in reader.valid_lines if not path.endswith(WRAPPER_NAME)][:1]
    if given and reader.valid_lines[given[0]] == 0:
        raise DoctorInputError(
            given[0], "does not look like PHP-FPM configuration (no `[section]` or `name = value`)"
        )
    reader.check_pools()
    return FpmSide(
        main, tuple(reader.pools.values()), tuple(reader.rejections), tuple(reader.warnings)
    )


class _Reader:
    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.pools: dict[str, Pool] = {}
        self.current: Pool | None = None
        self.rejections: list[Rejection] = []
        self.warnings: list[str] = []
        self.valid_lines: dict[str, int] = {}

    def load(self, path: str, included_at: Origin | None, stack: tuple[str, ...]) -> None:
        """Read one file, as fpm_conf_load_ini_file() does, nested `stack` deep."""
        real = self.tree.resolve(path)
        if len(stack) >= MAX_RECURSION:
            loop = (
                " (an include loop: " + " -> ".join([*stack, real]) + ")" if real in stack else ""
            )
            self._reject(f"failed to include more than 5 files recursively{loop}", included_at)
            return
        self.valid_lines.setdefault(path, 0)
        for number, raw in enumerate(self.tree.read(path).split("\n"), start=1):
            self._line(raw.rstrip("\r"), Origin(path, number), (*stack, real))

    def _line(self, raw: str, origin: Origin, stack: tuple[str, ...]) -> None:
        line = _parse_line(raw)
        if line.kind == "blank":
            return
        if line.kind == "error":
            self._reject(line.error, origin)
            return
        self.valid_lines[origin.file] = self.valid_lines.get(origin.file, 0) + 1
        if line.kind == "section":
            self._section(line.name, origin)
        elif line.name == "include":
            self._include(line.value, origin, stack)
        else:
            self._entry(line.name, line.value, origin)

    def _section(self, name: str, origin: Origin) -> None:
        if name.lower() == "global":
            self.current = None
            return
        self.current = self.pools.setdefault(name.lower(), Pool(name, origin))

    def _include(self, pattern: str, origin: Origin, stack: tuple[str, ...]) -> None:
        full = pattern if pattern.startswith("/") else posixpath.join(PHP_PREFIX, pattern)
        if not self.tree.is_inside(full):
            self.warnings.append(
                f"{origin}: include {full} lies outside the tree given; assumed to hold no pool"
            )
            return
        paths = self.tree.glob(full) if has_glob(full) else [full]
        paths = [p for p in paths if self.tree.exists(p) and not self.tree.is_dir(p)]
        if not paths:
            self._no_match(full, origin)
        for path in paths:
            self.load(path, origin, stack)

    def _no_match(self, pattern: str, origin: Origin) -> None:
        # glob(3) with GLOB_ERR aborts when it cannot open the directory of a wildcard.
        directory = posixpath.dirname(pattern)
        if has_glob(pattern) and not has_glob(directory) and not self.tree.is_dir(directory):
            self._reject(f"Unable to globalize '{pattern}' (ret=2): {directory} is missing", origin)
            return
        self.warnings.append(
            f"{origin}: WARNING: Nothing matches the include pattern '{pattern}': "
            "PHP-FPM starts without whatever pools were meant to be there"
        )

    def _entry(self, name: str, value: str, origin: Origin) -> None:
        array = _ARRAY_KEY.fullmatch(name)
        if array:
            self._array_entry(array.group(1), origin)
            return
        key = name.lower()
        if self.current is None:
            if key not in GLOBAL_OPTIONS:
                self._reject(f"unknown entry '{name}' (in [global])", origin)
            return
        if key not in POOL_OPTIONS:
            self._reject(f"unknown entry '{name}'", origin)
            return
        problem = _check_value(key, value)
        if problem:
            self._reject(f"unable to parse value for entry '{key}': {problem}", origin)
            return
        # fpm_conf_set_string() replaces `$pool` as the value is set.
        self.current.settings[key] = Setting(value.replace("$pool", self.current.name), origin)

    def _array_entry(self, name: str, origin: Origin) -> None:
        if name not in _ARRAY_OPTIONS:
            self._reject(f"unknown directive '{name}'", origin)
        elif self.current is None:
            self._reject("Array are not allowed in the global section", origin)

    def check_pools(self) -> None:
        """Apply the checks PHP-FPM makes once every file is read (fpm_conf_process_all_pools)."""
        if not self.pools:
            self._reject(
                "No pool defined. at least one pool section must be specified in config file", None
            )
        for pool in self.pools.values():
            for problem in _pool_problems(pool):
                self._reject(f"[pool {pool.name}] {problem}", pool.origin)
        self._check_duplicates()

    def _check_duplicates(self) -> None:
        seen: dict[str, Pool] = {}
        for pool in self.pools.values():
            listen = pool.listen
            if listen is None:
                continue
            if listen in seen:
                setting = pool.settings["listen"]
                self._reject(
                    f"[pool {pool.name}] unable to set listen address as it's already used in "
                    f"another pool '{seen[listen].name}'",
                    setting.origin,
                )
            seen.setdefault(listen, pool)

    def _reject(self, reason: str, origin: Origin | None) -> None:
        self.rejections.append(Rejection("php-fpm", "test", reason, origin))


def _pool_problems(pool: Pool) -> list[str]:
    problems = []
    if not pool.get("user"):
        problems.append("user has not been defined")
    if not pool.get("listen"):
        problems.append("no listen address have been defined!")
    manager = (pool.get("pm") or "").lower()
    if manager not in ("static", "dynamic", "ondemand"):
        problems.append("the process manager is missing (static, dynamic or ondemand)")
    children = _number(pool.get("pm.max_children"))
    if children < 1:
        problems.append("pm.max_children must be a positive value")
    if manager == "dynamic" and children >= 1:
        problems += _dynamic_problems(pool, children)
    return problems


def _dynamic_problems(pool: Pool, children: int) -> list[str]:
    low = _number(pool.get("pm.min_spare_servers"))
    high = _number(pool.get("pm.max_spare_servers"))
    start = _number(pool.get("pm.start_servers"))
    if low <= 0:
        return [f"pm.min_spare_servers({low}) must be a positive value"]
    if high <= 0:
        return [f"pm.max_spare_servers({high}) must be a positive value"]
    if low > children or high > children:
        return [
            f"pm.min_spare_servers({low}) and pm.max_spare_servers({high}) cannot be greater "
            f"than pm.max_children({children})"
        ]
    if high < low:
        return [f"pm.max_spare_servers({high}) must not be less than pm.min_spare_servers({low})"]
    if start > 0 and not low <= start <= high:
        return [
            f"pm.start_servers({start}) must not be less than pm.min_spare_servers({low}) and "
            f"not greater than pm.max_spare_servers({high})"
        ]
    return []


def _number(value: str | None) -> int:
    """Read an integer the way atoi() does: leading digits, 0 when there are none."""
    match = re.match(r"\s*(-?\d+)", value or "")
    return int(match.group(1)) if match else 0


def _check_value(key: str, value: str) -> str:
    if key in _INTEGER_OPTIONS and not re.fullmatch(r"-?\d*", value):
        return "is not a valid number (greater or equal than zero)"
    if key in _BOOLEAN_OPTIONS and value not in ("1", ""):
        return "invalid boolean value"
    if key == "pm" and value.lower() not in ("static", "dynamic", "ondemand"):
        return "invalid process manager (static, dynamic or ondemand)"
    return ""


def _parse_line(raw: str) -> _Line:
    """Parse one line as PHP's INI scanner (normal mode) does, for the forms pool files use."""
    text = raw.strip()
    if not text or text.startswith(";"):
        return _Line("blank")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return _Line("error", error="syntax error, unexpected end of file, expecting ']'")
        rest = text[end + 1 :].strip()
        if rest and not rest.startswith(";"):
            return _Line("error", error=f"syntax error, unexpected {rest[0]!r} after a section")
        return _Line("section", name=text[1:end].strip())
    name, equals, rest = text.partition("=")
    if not equals or not name.strip() or ";" in name:
        # What php-fpm prints for a line without `=`: a `#` comment, or `Listen 127.0.0.1:9000`.
        return _Line("error", error="value is NULL for a ZEND_INI_PARSER_ENTRY (no `=` here)")
    value, error = _parse_value(rest)
    if error:
        return _Line("error", error=error)
    return _Line("entry", name=name.strip(), value=value)


def _parse_value(text: str) -> tuple[str, str]:
    """Return the value after `=` and an error, as PHP's INI scanner would read it.

    Limitation: `${VAR}` and INI expressions (`|`, `&`, `~`, parentheses) are kept as written,
    not evaluated; the doctor says so where such a value matters.
    """
    out: list[str] = []
    index = 0
    quoted = False
    while index < len(text):
        char = text[index]
        if char == '"':
            end = text.find('"', index + 1)
            if end < 0:
                return "", "syntax error, unexpected end of file in a quoted value"
            out.append(text[index + 1 : end])
            index, quoted = end + 1, True
            continue
        if char == ";":
            break
        if char in "=!":
            return "", f"syntax error, unexpected '{char}'"
        out.append(char)
        index += 1
    value = "".join(out).strip()
    if not quoted and value.lower() in _TRUE_WORDS:
        return "1", ""
    if not quoted and value.lower() in _FALSE_WORDS:
        return "", ""
    return value, ""


def has_expression(value: str) -> bool:
    """Tell whether an unquoted value holds characters the INI scanner evaluates."""
    return bool(_EXPRESSION & set(value)) or "${" in value
