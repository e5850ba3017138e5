"""Measure how much time labkit adds over plain docker SDK calls on the same two images.

Prints medians and the ratio labkit / bare for starting a lab, for applying a change until a
request shows it, and for one request round trip. It asserts nothing about time: the figures
depend on the machine and on whatever else the engine runs. `make bench` runs it.
"""

from __future__ import annotations

import argparse
import http.client
import io
import itertools
import os
import socket
import statistics
import sys
import tarfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from docker.errors import APIError, NotFound
from docker.models.volumes import Volume

from labkit import Lab, LabConfig
from labkit.backend import Engine
from labkit.images import LabImages, require_images
from labkit.render import CONFIG_HEADER, RenderedLab, render_lab
from labkit.wait import poll

# The bare baseline drives the engine without labkit, so this script imports the docker SDK
# itself (inside labkit only backend.py does). `labkit down --all` still finds its objects.
BARE_LABELS = {"labkit.kit": "labkit", "labkit.lab": "bench-bare"}
SOCKET_DIR = "/run/php"
FPM_READY = "ready to handle connections"
WAIT_LIMIT = 30.0
# The kit polls every 10 ms; the bare side polls at the same pace so neither wins by sampling.
POLL_INTERVAL = 0.01
PAGE = "/whoami.php"

_names = itertools.count()

Samples = dict[str, list[float]]


class BenchFailed(RuntimeError):
    """A measured operation did not reach the state it was waiting for."""


@dataclass
class BarePair:
    """Two plain containers sharing a socket volume, and the configuration written into them."""

    fpm: Any
    nginx: Any
    port: int
    config: LabConfig


@dataclass(frozen=True)
class Change:
    """One configuration toggle: its row name, the setting and the two values it swaps."""

    name: str
    side: str
    key: str
    values: tuple[str, str]

    def step(self, index: int) -> dict[str, dict[str, str]]:
        """Return `apply()` keywords for round `index`; rounds alternate so each one changes."""
        return {self.side: {self.key: self.values[index % 2]}}


CHANGES = (
    Change("php-fpm restart", "pool", "listen.owner", ("ubuntu", "www-data")),
    Change("php-fpm reload", "pool", "pm.max_children", ("6", "5")),
    Change("nginx reload", "nginx", "fastcgi_read_timeout", ("61", "60")),
)


# HTTP, the same for both sides


def fetch(port: int, path: str = PAGE) -> tuple[int, str] | None:
    """Send one GET to 127.0.0.1; return the status and config header, or None if no answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        connection.request("GET", path, headers={"Host": "localhost", "Connection": "close"})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader(CONFIG_HEADER) or ""
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def wait_for(what: str, check: Callable[[], object | None]) -> None:
    """Poll `check` until it returns something other than None.

    Raises:
        BenchFailed: `WAIT_LIMIT` passed first.
    """
    if poll(check, WAIT_LIMIT, interval=POLL_INTERVAL) is None:
        raise BenchFailed(f"gave up after {WAIT_LIMIT:.0f}s waiting for {what}")


def wait_ok(port: int) -> None:
    wait_for(f"HTTP 200 from {PAGE} on port {port}", lambda: _is_ok(fetch(port)))


def _is_ok(answer: tuple[int, str] | None) -> bool | None:
    return True if answer and answer[0] == 200 else None


def elapsed_since(started: float) -> float:
    return time.perf_counter() - started


# The bare baseline: what a user without labkit would do with the docker SDK


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        return int(holder.getsockname()[1])


def tar_bytes(files: dict[str, str]) -> bytes:
    """Pack text files, by absolute path, into an archive for `put_archive("/")`."""
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as archive:
        for path, text in files.items():
            member = tarfile.TarInfo(path.lstrip("/"))
            payload = text.encode()
            member.size, member.mode, member.mtime = len(payload), 0o644, int(time.time())
            archive.addfile(member, io.BytesIO(payload))
    return stream.getvalue()


def run_bare(
    client: Any, created: list[Any], image: str, files: dict[str, str], **spec: Any
) -> Any:
    """Start one container with `files` in place before its server reads them.

    This is `containers.run(detach=True)` taken apart: the SDK's `run` is `create` then
    `start`, and the configuration has to be copied in between, or Nginx would first serve
    Debian's default site, which hands out `.php` files as plain text with status 200.
    """
    container = client.containers.create(image, detach=True, labels=BARE_LABELS, **spec)
    created.append(container)
    container.put_archive("/", tar_bytes(files))
    container.start()
    return container


def start_bare(client: Any, images: LabImages, created: list[Any]) -> BarePair:
    """Start PHP-FPM and Nginx one after the other on a shared socket volume."""
    name = f"bench-bare-{os.getpid()}-{next(_names)}"
    config = LabConfig()
    files = render_lab(config)
    volume = client.volumes.create(f"{name}-sockets", labels=BARE_LABELS)
    created.append(volume)
    mounts = {volume.name: {"bind": SOCKET_DIR, "mode": "rw"}}
    port = free_port()
    fpm = run_bare(client, created, images.fpm, files.fpm, name=f"{name}-php", volumes=mounts)
    nginx = run_bare(
        client, created, images.nginx, files.nginx, name=f"{name}-nginx", volumes=mounts,
        ports={"80/tcp": ("127.0.0.1", port)},
    )  # fmt: skip
    return BarePair(fpm, nginx, port, config)


@contextmanager
def bare_objects() -> Iterator[list[Any]]:
    """Collect the bare containers and volumes a block creates; remove them all when it ends."""
    created: list[Any] = []
    try:
        yield created
    finally:
        for thing in reversed(created):
            remove_bare(thing)


def remove_bare(thing: Any) -> None:
    """Remove one bare object; on trouble, say which and carry on so the rest still go."""
    try:
        if isinstance(thing, Volume):
            thing.remove(force=True)
        else:
            thing.remove(force=True, v=True)
    except NotFound:
        pass
    except APIError as error:
        progress(f"could not remove {thing.name} (labkit.lab=bench-bare): {error.explanation}")


def fpm_ready_count(fpm: Any) -> int:
    return str(fpm.logs().decode(errors="replace")).count(FPM_READY)


def write_bare_change(pair: BarePair, change: Change, index: int) -> RenderedLab:
    """Write the toggled configuration into the pair (untimed) and return the new files."""
    pair.config = pair.config.with_changes(**change.step(index))
    files = render_lab(pair.config)
    target = pair.nginx if change.side == "nginx" else pair.fpm
    target.put_archive("/", tar_bytes(files.nginx if change.side == "nginx" else files.fpm))
    return files


def time_bare_change(pair: BarePair, change: Change, index: int) -> float:
    """Time the plain restart or signal that makes a written change live, until it answers."""
    files = write_bare_change(pair, change, index)
    readies = fpm_ready_count(pair.fpm)
    started = time.perf_counter()
    if change.name == "php-fpm restart":
        pair.fpm.restart(timeout=5)
    elif change.name == "php-fpm reload":
        pair.fpm.kill(signal="SIGUSR2")
        wait_for("php-fpm to log ready", lambda: fpm_ready_count(pair.fpm) > readies or None)
    else:
        pair.nginx.kill(signal="SIGHUP")
        wait_for("new nginx workers", lambda: _answers_with(pair.port, files.config_id))
    wait_ok(pair.port)
    return elapsed_since(started)


def _answers_with(port: int, config_id: str) -> bool | None:
    answer = fetch(port, "/index.html")
    return True if answer and answer[1] == config_id else None


# The kit


def lab_name(tag: str) -> str:
    return f"bench-{os.getpid()}-{tag}-{next(_names)}"


@contextmanager
def kit_lab(engine: Engine, topology: str) -> Iterator[Lab]:
    """Yield a lab handle (not started) that is removed when the block ends, however it ends."""
    lab = Lab(lab_name(topology[:3]), topology, engine)
    try:
        yield lab
    finally:
        lab.down()


def time_kit_up(engine: Engine, topology: str) -> float:
    with kit_lab(engine, topology) as lab:
        started = time.perf_counter()
        lab.up()
        wait_ok(lab.port)
        return elapsed_since(started)


def time_bare_up(engine: Engine, images: LabImages) -> float:
    with bare_objects() as created:
        started = time.perf_counter()
        pair = start_bare(engine.client, images, created)
        wait_ok(pair.port)
        return elapsed_since(started)


def time_kit_change(lab: Lab, change: Change, index: int) -> float:
    """Time `apply()` plus the one request a learner sends to see the result."""
    started = time.perf_counter()
    lab.apply(**change.step(index))
    outcome = lab.request(PAGE)
    seconds = elapsed_since(started)
    if outcome.status != 200:
        raise BenchFailed(f"{change.name} on lab {lab.name}: got\n{outcome.summary()}")
    return seconds


def time_kit_request(lab: Lab) -> float:
    started = time.perf_counter()
    lab.request(PAGE)
    return elapsed_since(started)


def time_bare_request(port: int) -> float:
    started = time.perf_counter()
    answer = fetch(port)
    seconds = elapsed_since(started)
    if not _is_ok(answer):
        raise BenchFailed(f"plain GET {PAGE} on port {port} answered {answer}")
    return seconds


# Rounds: every round runs each measurement once, interleaved, so load from other users of
# the engine falls on the kit and the baseline alike.


def measure_up(engine: Engine, images: LabImages, rounds: range, samples: Samples) -> None:
    for index in rounds:
        progress(f"up, round {index}")
        keep = index >= 0
        for topology in ("pod", "network"):
            record(samples, f"up {topology}", time_kit_up(engine, topology), keep)
        record(samples, "up bare", time_bare_up(engine, images), keep)


def measure_changes(engine: Engine, images: LabImages, rounds: range, samples: Samples) -> None:
    with kit_lab(engine, "pod") as pod, kit_lab(engine, "network") as net, bare_objects() as made:
        pod.up()
        net.up()
        pair = start_bare(engine.client, images, made)
        wait_ok(pair.port)
        for index in rounds:
            progress(f"apply and request, round {index}")
            measure_change_round(pod, net, pair, index - rounds.start, samples, index >= 0)


def measure_change_round(
    pod: Lab, net: Lab, pair: BarePair, index: int, samples: Samples, keep: bool
) -> None:
    for change in CHANGES:
        record(samples, f"{change.name} pod", time_kit_change(pod, change, index), keep)
        record(samples, f"{change.name} network", time_kit_change(net, change, index), keep)
        record(samples, f"{change.name} bare", time_bare_change(pair, change, index), keep)
    record(samples, "request pod", time_kit_request(pod), keep)
    record(samples, "request bare", time_bare_request(pod.port), keep)


def record(samples: Samples, key: str, seconds: float, keep: bool) -> None:
    if keep:
        samples[key].append(seconds)


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# Report

ROWS = (
    ("Lab.up(), pod topology", "up pod", "up bare"),
    ("Lab.up(), network topology", "up network", "up bare"),
    *(
        (
            f"apply + request, {change.name}, {topology}",
            f"{change.name} {topology}",
            f"{change.name} bare",
        )
        for change in CHANGES
        for topology in ("pod", "network")
    ),
    ("lab.request() vs plain GET, pod", "request pod", "request bare"),
)


def format_table(samples: Samples) -> str:
    width = max(len(label) for label, _, _ in ROWS)
    lines = [f"{'measurement':<{width}}  {'labkit s':>9}  {'bare s':>9}  {'ratio':>6}"]
    for label, kit_key, bare_key in ROWS:
        kit, bare = statistics.median(samples[kit_key]), statistics.median(samples[bare_key])
        lines.append(f"{label:<{width}}  {kit:>9.3f}  {bare:>9.3f}  {kit / bare:>5.2f}x")
    return "\n".join(lines)


def machine_line(engine: Engine, runs: int) -> str:
    version = engine.client.version()
    return (
        f"machine: {os.cpu_count()} cores, Docker Engine {version.get('Version', '?')}"
        f" ({version.get('Os', '?')}/{version.get('Arch', '?')}),"
        f" Python {sys.version.split()[0]}; medians of {runs} run{'s' if runs > 1 else ''}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="measured runs per figure")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs first")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    engine = Engine()
    images = require_images(engine)
    rounds = range(-args.warmup, args.runs)
    samples: Samples = defaultdict(list)

    measure_up(engine, images, rounds, samples)
    measure_changes(engine, images, rounds, samples)

    print(format_table(samples))
    print(machine_line(engine, args.runs))


if __name__ == "__main__":
    main()
