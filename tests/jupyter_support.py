"""Start a JupyterLab for a test, read the URL it prints, and stop it with its kernels' labs.

A notebook's lab carries the pid and start time of the kernel that started it (`labkit.pid`,
`labkit.pid_start`). When the server has stopped, whatever its kernels left on the engine is
removed by those two labels, so a test removes its own labs and nobody else's, even when it
fails halfway.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from labkit.backend import LAB_LABEL, Engine
from labkit.lab import HOST_LABEL, PID_LABEL, PID_START_LABEL
from labkit.wait import poll

# On a loaded 2-core machine JupyterLab takes a few seconds to print its URL.
START_LIMIT = 120.0
# Long enough for a kernel to run its atexit clean-up (`Lab.down()`) before it is killed.
STOP_LIMIT = 60.0
LOG_TAIL_LINES = 30
# For a test's server: nothing reaches beyond 127.0.0.1 (no news feed, no update check, no PyPI
# extension manager), and a kernel that the server stops has time for its atexit `Lab.down()`.
TEST_SERVER_OPTIONS = (
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    "--LabApp.extension_manager=readonly",
    "--KernelManager.shutdown_wait_time=30",
)
URL_PATTERN = re.compile(r"http://127\.0\.0\.1:(?P<port>\d+)/lab\?token=(?P<token>[0-9a-f]+)")
# JupyterLab settings for a test: no news or update checks (they would reach out to the
# internet), and every cell in the DOM, so the browser can wait for any output.
QUIET_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


@dataclass(frozen=True)
class JupyterServer:
    """A running JupyterLab: the URL it printed, its port and token, and its log file."""

    url: str
    port: int
    token: str
    log: Path

    def page_url(self, path: str) -> str:
        """Return the address of `path` (e.g. ``lab/tree/x.ipynb``) with the token."""
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def log_tail(self) -> str:
        return _tail(self.log)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def quiet_lab_environment(folder: Path) -> dict[str, str]:
    """Return an environment whose JupyterLab keeps its settings and state under `folder`.

    The user's own settings, workspaces and runtime files are left alone, and the test's
    settings (`QUIET_SETTINGS`) apply.
    """
    settings = folder / "settings"
    for plugin, values in QUIET_SETTINGS.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(folder / "config"),
        "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(folder / "workspaces"),
    }


@contextmanager
def running_jupyterlab(
    command: Sequence[str], cwd: Path, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[JupyterServer]:
    """Run a command that starts JupyterLab; yield once it has printed its URL with a token.

    On the way out, pass or fail: stop the server (it shuts its kernels down), end any kernel
    that outlived it, and remove the labs those kernels left on the engine.

    Raises:
        AssertionError: No URL within `START_LIMIT` seconds; the message has the log tail.
    """
    with log.open("wb") as output:
        # Its own session, so that stopping it reaches a shell wrapper's children too.
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield _wait_for_url(process, log)
    finally:
        kernels = _descendants(process.pid)
        owners = {(str(kernel.pid), _start_ticks(kernel.pid)) for kernel in kernels}
        _stop(process)
        _end(kernels)
        _remove_labs_of(owners)


def _wait_for_url(process: subprocess.Popen[bytes], log: Path) -> JupyterServer:
    def printed_url() -> re.Match[str] | None:
        if process.poll() is not None:
            raise AssertionError(f"JupyterLab exited with {process.returncode}:\n{_tail(log)}")
        return URL_PATTERN.search(log.read_text(errors="replace"))

    found = poll(printed_url, START_LIMIT, interval=0.2)
    if found is None:
        raise AssertionError(f"JupyterLab printed no URL in {START_LIMIT:.0f} s:\n{_tail(log)}")
    return JupyterServer(found[0], int(found["port"]), found["token"], log)


def _descendants(pid: int) -> list[psutil.Process]:
    # Limitation: a kernel that died before the server stopped is not found here; its lab stays
    # until an `up()` reaps it (labkit.lab.REAP_GRACE) and the leak check reports it.
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server with SIGTERM, which shuts its kernels down; kill its session if it hangs."""
    if process.poll() is not None:
        return  # Already reaped: its pid may belong to another process by now.
    for sent in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sent)
        except ProcessLookupError:
            pass
        try:
            process.wait(STOP_LIMIT)
            return
        except subprocess.TimeoutExpired:
            continue


def _end(processes: list[psutil.Process]) -> None:
    """Kill those of `processes` still alive (kernels of a killed server)."""
    for process in processes:
        # psutil refuses to signal a pid that a new process has taken since.
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def _start_ticks(pid: int) -> str:
    """Return when a process started, in the form labkit writes into `labkit.pid_start`."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return ""
    return fields[19] if len(fields) > 19 else ""


def _remove_labs_of(owners: set[tuple[str, str]]) -> None:
    """Remove every lab on this host whose (pid, start time) labels are in `owners`."""
    if not owners:
        return
    host = socket.gethostname()
    with Engine() as engine:
        names = {
            labels[LAB_LABEL]
            for labels in engine.list_labels(LAB_LABEL)
            if labels.get(HOST_LABEL) == host
            and (labels.get(PID_LABEL), labels.get(PID_START_LABEL)) in owners
        }
        for name in sorted(names):
            engine.remove_objects({LAB_LABEL: name})


def _tail(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(no output)"
