"""Send requests through a lab's Nginx and collect what each one caused.

A 502 is data, not an exception: `Outcome` carries the status, the log lines Nginx and PHP-FPM
wrote for this request, the socket file as Nginx's container sees it, and the cause read from
those lines.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from labkit.backend import Container, Engine
from labkit.diagnose import Cause, classify, explain, is_explained
from labkit.errors import ProbeError
from labkit.wait import poll

# Log lines reach `docker logs` a little after the response; wait this long for the line
# that explains an error status before settling on what is there.
LOG_SETTLE_LIMIT = 2.0
BODY_LIMIT = 4000


@dataclass(frozen=True)
class SocketFile:
    """A unix socket path as one container sees it."""

    path: str
    exists: bool
    permissions: str = ""
    owner: str = ""
    group: str = ""
    mode: str = ""

    def listing(self) -> str:
        """Return an `ls -l`-like line, or say that the file is missing."""
        if not self.exists:
            return f"{self.path}: No such file or directory"
        return f"{self.permissions} {self.owner} {self.group} {self.path}"


@dataclass(frozen=True)
class Outcome:
    """What one request through Nginx returned, and why."""

    path: str
    status: int
    cause: Cause
    body: str
    nginx_log: tuple[str, ...]
    fpm_log: tuple[str, ...]
    socket: SocketFile | None
    config_id: str
    seconds: float
    notes: tuple[str, ...] = ()

    @property
    def explanation(self) -> str:
        return explain(self.cause)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["cause"] = self.cause.value
        data["explanation"] = self.explanation
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def summary(self) -> str:
        """Return the status, the cause and the explaining log lines, for printing."""
        lines = [f"HTTP {self.status} {http.client.responses.get(self.status, '')}".rstrip()]
        lines.append(f"cause: {self.cause.value}: {self.explanation}")
        lines += [f"nginx: {line}" for line in self.nginx_log]
        lines += [f"php-fpm: {line}" for line in self.fpm_log]
        if self.socket is not None:
            lines.append(f"socket: {self.socket.listing()}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class Response:
    status: int
    body: str
    config_id: str


def send_request(port: int, path: str, timeout: float = 90.0, host: str | None = None) -> Response:
    """Send one GET to Nginx on 127.0.0.1.

    Raises:
        ProbeError: No HTTP answer at all (Nginx down, port closed, timed out).
    """
    if host is not None and not re.fullmatch(r"[A-Za-z0-9.-]{1,100}", host):
        raise ProbeError(f"request host must be a host name like `alice.test`, got {host!r}")
    if not isinstance(path, str) or not re.fullmatch(r"/[\x21-\x7e]{0,2000}", path):
        raise ProbeError(
            f"request path must start with `/` and hold printable ASCII without spaces "
            f"(percent-encode the rest), got {path!r}"
        )
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Host": host or "localhost", "Connection": "close"}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read(BODY_LIMIT).decode(errors="replace")
        return Response(response.status, body, response.getheader("X-Labkit-Config") or "")
    except (OSError, http.client.HTTPException) as error:
        raise ProbeError(f"no HTTP answer from Nginx on 127.0.0.1:{port}{path}: {error}") from error
    finally:
        connection.close()


def read_socket(engine: Engine, container: Container, path: str) -> SocketFile:
    """Stat a unix socket path inside a running container."""
    # `ls` marks a file that carries an ACL with `+`; stat's %A does not.
    script = 'stat -c "%A|%U|%G|%a" "$1" && ls -ld "$1"'
    code, output = engine.exec(container, ["sh", "-c", script, "stat", path])
    if code != 0:
        return SocketFile(path, exists=False)
    stat_line, listing = [*output.strip().splitlines(), ""][:2]
    permissions, owner, group, mode = stat_line.split("|")
    if listing.split(" ", 1)[0].endswith("+"):
        permissions += "+"
    return SocketFile(path, True, permissions, owner, group, mode.rjust(4, "0"))


# PHP-FPM's own start-up and reload notices: no request causes them. Before it has started,
# PHP-FPM prints each of them twice in a container (to stderr and to its error_log, which is
# stderr too), so the second copy can land after the start, in a request's time window.
_START_UP_NOTICES = (
    "NOTICE: fpm is running",
    "NOTICE: ready to handle connections",
    "NOTICE: systemd monitor interval",
    "NOTICE: using inherited socket",
    "NOTICE: Reloading in progress",
    "NOTICE: reloading: execvp",
)


def _is_start_up(line: str) -> bool:
    return any(notice in line for notice in _START_UP_NOTICES)


def collect_logs(
    engine: Engine, nginx: Container, fpm: Container, since: float, status: int
) -> tuple[list[str], list[str]]:
    """Return the Nginx error lines and PHP-FPM lines written since `since`.

    For an error status, keep reading until a line explains it or `LOG_SETTLE_LIMIT` passes.
    PHP-FPM's line about a dropped client may arrive after Nginx's line about the closed
    connection, so a merely closed connection is not taken as the last word early.
    """

    def read() -> tuple[list[str], list[str]]:
        fpm_lines = [line for line in engine.logs_since(fpm, since) if not _is_start_up(line)]
        return engine.logs_since(nginx, since, stdout=False), fpm_lines

    def settled() -> tuple[list[str], list[str]] | None:
        logs = read()
        explained = is_explained(status, *logs)
        # Nginx logs every 502 and 504 itself; wait for its line even when PHP-FPM's came first.
        nginx_done = bool(logs[0]) or status not in (502, 504)
        if explained and nginx_done and classify(status, *logs) is not Cause.UPSTREAM_CLOSED:
            return logs
        return None

    if status < 400:
        return read()
    return poll(settled, LOG_SETTLE_LIMIT, interval=0.05) or read()


def probe(
    engine: Engine,
    port: int,
    nginx: Container,
    fpm: Container,
    path: str,
    socket_path: str | None,
    host: str | None = None,
) -> Outcome:
    """Send one request and gather its outcome.

    Raises:
        ProbeError: Nginx gave no HTTP answer.
    """
    with ThreadPoolExecutor(max_workers=1) as background:
        # The socket is read while the request runs: an exec costs more than a request here.
        socket = background.submit(read_socket, engine, nginx, socket_path) if socket_path else None
        since = time.time()
        started = time.monotonic()
        response = send_request(port, path, host=host)
        seconds = time.monotonic() - started
        nginx_lines, fpm_lines = collect_logs(engine, nginx, fpm, since, response.status)
    cause = classify(response.status, nginx_lines, fpm_lines)
    return Outcome(
        path, response.status, cause, response.body, tuple(nginx_lines), tuple(fpm_lines),
        socket.result() if socket else None, response.config_id, seconds,
    )  # fmt: skip
