"""A live lab: a real Nginx in front of a real PHP-FPM, in containers of their own.

Two topologies:

* ``pod`` (default): Nginx and PHP-FPM share one network namespace, as on a single server, so
  ``127.0.0.1:9000`` means the same host for both. A tiny holder container owns that
  namespace and the published port, so either server can restart without cutting the other
  off (restarting the namespace's owner itself would).
* ``network``: separate containers on a private bridge network, as in most Docker
  deployments; PHP-FPM is reachable from Nginx as ``php``.

Every object carries ``labkit.*`` labels; ``up()`` first removes anything a crashed kernel
left under the same lab name, and ``down()`` removes everything the lab created.
"""

from __future__ import annotations

import atexit
import dataclasses
import ipaddress
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from labkit import render, scripts
from labkit.backend import KIT_LABEL, LAB_LABEL, ROLE_LABEL, Container, Engine
from labkit.config import (
    RESTART_DIRECTIVES,
    SOCKET_DIR,
    LabConfig,
    TcpAddress,
    Topology,
    UnixSocket,
    check_lab_name,
    check_topology,
    config_from_dict,
    config_to_dict,
)
from labkit.errors import (
    ApplyFailed,
    BackendError,
    ConfigError,
    ConfigRejected,
    LabInUse,
    LabkitError,
    LabNotFound,
    LabTimeout,
    ProbeError,
    ServerStopped,
)
from labkit.images import LabImages, ensure_images, require_images
from labkit.probe import Outcome, probe, send_request
from labkit.wait import poll

logger = logging.getLogger(__name__)

SESSION_LABEL = "labkit.session"
PID_LABEL = "labkit.pid"
HOST_LABEL = "labkit.host"
TOPOLOGY_LABEL = "labkit.topology"
CREATED_LABEL = "labkit.created"
DETACHED_LABEL = "labkit.detached"
PID_START_LABEL = "labkit.pid_start"
# A lab whose owning process is gone is reaped only after this many seconds, so a lab that is
# still being created by a process on another pid namespace view is never taken for dead.
REAP_GRACE = 60.0
# Set by `make test`: every lab a test run starts carries it, so the leak check counts only
# the run's own objects on an engine that others share.
RUN_ENV = "LABKIT_TEST_RUN"
RUN_LABEL = "labkit.run"
SESSION_ID = uuid.uuid4().hex[:12]
STATE_FILE = "/etc/labkit/lab.json"
FPM_READY = "ready to handle connections"
START_LIMIT = 30.0
# Files travel inside one exec's command line; keep checked text well under its limit.
CHECK_LIMIT = 64_000
# Resource limits per container, so one learner's runaway PHP cannot starve a room.
LIMITS: dict[str, Any] = {"mem_limit": "256m", "pids_limit": 256, "cpu_shares": 512}
# Only what each server needs as root before it drops to its workers' accounts: create the
# socket in a directory it does not own (DAC_OVERRIDE), chown it, switch user, bind port 80,
# and signal workers that run under another uid (KILL).
SERVER_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"]
HARDENING: dict[str, Any] = {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]}

Progress = Callable[[str], None]
FpmAction = Literal["auto", "reload", "restart"]
# A server container: files copied in before start, image, network settings, capabilities.
_ServerSpec = tuple[dict[str, str], str, dict[str, Any], list[str]]


@dataclass(frozen=True)
class ApplyResult:
    """What one `apply()` changed and what it had to restart or reload."""

    diff: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        if not self.actions:
            return "nothing changed"
        return "\n".join([f"applied: {', '.join(self.actions)}", self.diff.rstrip()])


@dataclass(frozen=True)
class LabInfo:
    """One lab found on the engine."""

    name: str
    topology: str
    containers: int
    created: float
    session: str

    @property
    def age_seconds(self) -> float:
        return max(0.0, time.time() - self.created)


class Lab:
    """A running Nginx + PHP-FPM pair that a notebook, a test or the CLI drives.

    Use it as a context manager, or call `up()` and `down()`:

        with Lab("demo") as lab:
            print(lab.request("/whoami.php").summary())
    """

    def __init__(
        self,
        name: str = "default",
        topology: Topology | str = "pod",
        engine: Engine | None = None,
        progress: Progress | None = None,
        port: int | None = None,
    ) -> None:
        self.name = check_lab_name(name)
        if port is not None and (not isinstance(port, int) or not 1024 <= port <= 65535):
            raise ConfigError("lab", "port", "None (any free port) or 1024 to 65535", port)
        self._fixed_port = port
        self._detached = False
        self._owns_engine = False
        self._drift = ""
        self.topology: Topology = check_topology(topology)
        self._engine = engine
        self._progress = progress or _log_progress
        self.config = LabConfig()
        self.port = 0
        self._last_diff = ""
        self._containers: dict[str, Container] = {}
        self._atexit_registered = False

    # Lifecycle

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine()
            self._owns_engine = True
        return self._engine

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def up(
        self,
        build: bool = True,
        detach: bool = False,
        config: LabConfig | None = None,
        replace: bool = False,
    ) -> Lab:
        """Start the lab with Debian's default configuration (or `config`).

        Args:
            build: Build missing images first (with progress) instead of failing.
            detach: Leave the lab running when this Python process exits (the CLI's way).
            config: Start from this configuration instead of the default.
            replace: Replace a running lab of that name that `labkit up` started.

        Raises:
            BackendError: The engine is unreachable or refused an operation.
            LabTimeout: A server did not come up in time.
        """
        try:
            with _name_lock(self.name):
                return self._up(build, detach, config, replace)
        except BaseException:
            self._release_engine()
            raise

    def _up(self, build: bool, detach: bool, config: LabConfig | None, replace: bool) -> Lab:
        engine = self.engine
        images = ensure_images(engine, self._progress) if build else require_images(engine)
        reap_orphans(engine)
        self._sweep_leftovers(replace)
        self._detached = detach
        self.config = config or LabConfig()
        self._check_upstreams(self.config)
        self._last_diff = ""

        self._progress(f"starting lab {self.name} ({self.topology})")
        rendered = render.render_lab(self.config)
        try:
            self._create_shared()
            self._start_servers(images, rendered)
            self._wait_fpm_ready(time.time() - 60, START_LIMIT)
            self._wait_nginx_config(rendered.config_id)
        except BaseException as error:
            self.engine.remove_objects({LAB_LABEL: self.name})
            raise self._start_failure(error) from error

        if not detach:
            self._register_atexit()
        logger.info("lab %s is up on %s", self.name, self.url)
        return self

    def down(self) -> int:
        """Remove every container, network and volume of this lab; return how many."""
        removed = self.engine.remove_objects({LAB_LABEL: self.name})
        self._containers.clear()
        if self._atexit_registered:
            atexit.unregister(self.down)
            self._atexit_registered = False
        self._release_engine()
        logger.info("lab %s removed (%d objects)", self.name, removed)
        return removed

    def _release_engine(self) -> None:
        if self._owns_engine and self._engine is not None:
            self._engine.close()
            self._engine, self._owns_engine = None, False

    @classmethod
    def attach(cls, name: str = "default", engine: Engine | None = None) -> Lab:
        """Return a handle on a lab that is already running (for instance one the CLI started).

        Raises:
            LabNotFound: No lab of that name is on the engine.
        """
        owns_engine = engine is None
        engine = engine or Engine()
        found = engine.find_containers({LAB_LABEL: check_lab_name(name), ROLE_LABEL: "php"})
        if not found:
            if owns_engine:
                engine.close()
            raise LabNotFound(
                f"no lab named {name!r} is running; start it with `labkit up --lab {name}`"
            )
        fpm = found[0]
        lab = cls(name, fpm.labels.get(TOPOLOGY_LABEL, "pod"), engine)
        lab._owns_engine = owns_engine
        lab._containers = {"php": fpm}
        for role in ("nginx", "holder", "remote"):
            containers = engine.find_containers({LAB_LABEL: name, ROLE_LABEL: role})
            if containers:
                lab._containers[role] = containers[0]
        copies = [engine.read_file(c, STATE_FILE) for c in lab._containers.values()]
        states = [json.loads(text) for text in copies if text]
        state = max(states, key=lambda s: s.get("written", 0), default={})
        lab.config = config_from_dict(state.get("config") or config_to_dict(LabConfig()))
        lab._last_diff = state.get("last_diff", "")
        lab._drift = lab._find_drift()
        try:
            lab.port = engine.published_port(lab._front())
        except BackendError:
            # A stopped front container publishes nothing; status() and request() say why.
            lab.port = 0
        return lab

    # Configuration

    def apply(
        self,
        pool: Mapping[str, str | None] | None = None,
        nginx: Mapping[str, str | None] | None = None,
        pool_name: str = "www",
        fpm_action: FpmAction = "auto",
    ) -> ApplyResult:
        """Change pool directives and Nginx settings, test them, then restart what must change.

        Values are validated first, then `php-fpm -t` and `nginx -t` judge the rendered files;
        only then are the real files written. A listen change restarts PHP-FPM (a reload
        would keep the old socket, see `RESTART_DIRECTIVES`); other pool changes reload it;
        Nginx changes reload Nginx. Returns once the new configuration answers.

        Args:
            pool: Directives to set; None removes a directive from the pool file.
            nginx: `fastcgi_pass`, `user` or `fastcgi_read_timeout`; None restores a default.
            pool_name: Which pool `pool` changes.
            fpm_action: ``auto`` restarts or reloads PHP-FPM as the change needs; ``reload``
                forces a reload, to show what a reload leaves unchanged (field case R04).

        Raises:
            ConfigError: A refused value; nothing was touched.
            ConfigRejected: php-fpm -t or nginx -t refused the files; nothing was restarted.
            ApplyFailed: A server did not come back; the lab is back on its last good config.
        """
        for label, changes in (("pool", pool), ("nginx", nginx)):
            if changes is not None and not isinstance(changes, Mapping):
                allowed = "a dict of settings, e.g. {'listen.mode': '0660'}"
                raise ConfigError("apply", label, allowed, changes)
        if fpm_action not in ("auto", "reload", "restart"):
            raise ConfigError("apply", "fpm_action", "'auto', 'reload' or 'restart'", fpm_action)
        return self.apply_config(self.config.with_changes(pool, nginx, pool_name), fpm_action)

    def apply_config(
        self, new: LabConfig, fpm_action: FpmAction = "auto", force: bool = False
    ) -> ApplyResult:
        """Switch the lab to a whole new configuration, as `apply()` does for a few settings.

        Raises:
            ConfigRejected: php-fpm -t or nginx -t refused the files; nothing was restarted.
            ApplyFailed: A server did not come back; the lab is back on its last good config.
        """
        self._check_upstreams(new)
        stopped = self.stopped_servers()
        if stopped:
            raise ServerStopped(f"lab {self.name!r}: {_stopped_text(stopped)}, then apply")
        change = _Change.between(self.config, new, fpm_action, force)
        if not change.actions:
            return ApplyResult("", ())

        diff = render.diff_files(change.old.all_files(), change.new.all_files())
        self._switch(change, self._state_files(new, diff))
        self.config, self._last_diff, self._drift = new, diff, ""
        logger.info("lab %s applied: %s", self.name, ", ".join(change.actions))
        return ApplyResult(diff, change.actions)

    def add_pool(self, name: str, directives: Mapping[str, str]) -> ApplyResult:
        """Add a pool (or replace one of that name), with its own file in pool.d.

        Raises:
            ConfigError: A refused name or directive.
        """
        return self.apply_config(self.config.with_pool(name, directives))

    def remove_pool(self, name: str) -> ApplyResult:
        """Remove a pool and its file."""
        return self.apply_config(self.config.with_pool(name, None))

    def set_site(self, server_name: str, fastcgi_pass: str | None) -> ApplyResult:
        """Add or change a further Nginx site, or remove it with None.

        Each site has its own file in sites-available and passes PHP to its own address;
        `request(path, host=server_name)` reaches it.
        """
        return self.apply_config(self.config.with_site(server_name, fastcgi_pass))

    def reset(self) -> ApplyResult:
        """Return to Debian's default configuration: one pool, one site, no extras."""
        return self.apply_config(LabConfig(), fpm_action="restart", force=True)

    def config_text(self) -> dict[str, str]:
        """Return the rendered files, by path: every pool file, nginx.conf and the site."""
        return render.render_lab(self.config).all_files()

    def config_file(self, name: str) -> str:
        """Return one rendered file by the end of its path, e.g. ``pool.d/www.conf``.

        Raises:
            LabkitError: No file, or more than one, ends with `name`.
        """
        files = self.config_text()
        if not isinstance(name, str) or not name:
            raise LabkitError(
                f"config_file takes the end of a path like 'pool.d/www.conf', got {name!r}"
            )
        matches = [path for path in files if path == name or path.endswith("/" + name)]
        if len(matches) != 1:
            raise LabkitError(
                f"{name!r} names {len(matches)} of the lab's files: {', '.join(sorted(files))}"
            )
        return files[matches[0]]

    def diff(self) -> str:
        """Return the unified diff of what the last `apply()` changed."""
        return self._last_diff

    def check(self, tool: str, text: str) -> tuple[bool, str]:
        """Run `php-fpm -t` on a pool file text, or `nginx -t` on a site text, without applying.

        Returns:
            Whether the tool accepted it, and what it printed.

        Raises:
            ConfigError: Not text, or larger than `CHECK_LIMIT` characters.
        """
        if not isinstance(text, str) or len(text) > CHECK_LIMIT:
            allowed = f"config text of at most {CHECK_LIMIT} characters"
            raise ConfigError(
                "check", "text", allowed, text if not isinstance(text, str) else "..."
            )
        if tool == "php-fpm":
            main = render.render_fpm_main(render.POOL_CANDIDATE_DIR, pools=())
            files = {render.FPM_CANDIDATE: main, f"{render.POOL_CANDIDATE_DIR}/check.conf": text}
            role = "php"
        elif tool == "nginx":
            main = render.render_nginx_main(self.config.nginx, render.NGINX_SITE_CANDIDATE, "check")
            files = {render.NGINX_CANDIDATE: main, render.NGINX_SITE_CANDIDATE: text}
            role = "nginx"
        else:
            raise ConfigError("check", "tool", "'php-fpm' or 'nginx'", tool)
        code, output = self._exec_script(role, _test_script(role, files, install=None))
        return code == 0, output.replace(scripts.TEST_FAILED_MARK, "").strip()

    def understood(self, config: LabConfig) -> tuple[bool, str]:
        """Return how PHP-FPM (`-tt`) and Nginx (`-T`) read a configuration, applying nothing.

        Returns:
            Whether both tools accepted it, and what they printed: PHP-FPM's list of every
            pool setting as it parsed it, then Nginx's configuration as it read it.
        """
        candidate = render.render_lab(config, candidate=True)
        printed = []
        accepted = True
        for role, files in (("php", candidate.fpm), ("nginx", candidate.nginx)):
            code, output = self._exec_script(role, _test_script(role, files, None, dump=True))
            accepted = accepted and code == 0
            printed.append(output.replace(scripts.TEST_FAILED_MARK, "").strip())
        return accepted, "\n".join(printed)

    # Observation

    def request(self, path: str = "/whoami.php", host: str | None = None) -> Outcome:
        """Send a GET through Nginx and return its status, cause and log lines.

        Args:
            path: The request path.
            host: The Host header: a site's `server_name` reaches that site; None the default.

        Raises:
            ProbeError: Nginx gave no HTTP answer at all.
        """
        sites = {s.server_name: s.upstream for s in self.config.sites}
        upstream = sites.get(host or "", self.config.nginx.upstream)
        socket_path = upstream.path if isinstance(upstream, UnixSocket) else None
        containers = (self._container("nginx"), self._container("php"))
        try:
            outcome = probe(self.engine, self.port, *containers, path, socket_path, host)
        except ProbeError as error:
            stopped = self.stopped_servers()
            if stopped:
                raise ProbeError(f"{error}; {_stopped_text(stopped)}") from error
            raise
        if outcome.status >= 500:
            stopped = self.stopped_servers()
            if stopped:
                return dataclasses.replace(outcome, notes=(*outcome.notes, _stopped_text(stopped)))
        return outcome

    def stopped_servers(self) -> dict[str, str]:
        """Return the lab's containers that are not running (or cut off), with their state.

        In `pod`, a server that started before the holder's latest start sits in the network
        namespace of the holder's previous run, which no longer reaches anything.
        """
        return _stopped(self._describe_containers())

    def _describe_containers(self) -> dict[str, dict[str, str]]:
        return {role: self.engine.describe(c) for role, c in self._containers.items()}

    def repair(self) -> list[str]:
        """Start again any server container that stopped (killed, crashed, stopped by hand).

        The configuration is the last one applied, so the lab comes back as it was.

        Returns:
            The roles that were started.

        Raises:
            LabTimeout: A server did not come back.
        """
        stopped = self.stopped_servers()
        if "removed" in stopped.values():
            raise LabkitError(
                f"lab {self.name!r}: a container was removed ({_stopped_text(stopped)}); "
                "run up() again to rebuild the lab"
            )
        since = time.time()
        if "holder" in stopped:
            # A new holder run means a new network namespace: both servers must join it.
            self.engine.start(self._container("holder"))
            stopped.update(php="cut off", nginx="cut off")
        for role in stopped:
            if role != "holder":
                self.engine.restart(self._container(role), timeout=5)
        self.port = self.engine.published_port(self._front())
        if "php" in stopped:
            self._wait_fpm_ready(since, START_LIMIT)
        if "nginx" in stopped:
            self._wait_nginx_config(render.render_lab(self.config).config_id)
        logger.info("lab %s repaired: %s", self.name, ", ".join(stopped) or "nothing")
        return sorted(stopped)

    def reload(self, role: str) -> None:
        """Reload Nginx or PHP-FPM with the files it already has.

        For changes made inside a container with `run()`, such as adding Nginx's account to a
        group: Nginx's new workers take the account's groups as they start.

        Raises:
            LabkitError: `role` is not ``nginx`` or ``php``, or the reload did not finish.
        """
        if role == "nginx":
            self._run_checked("nginx", scripts.reload_nginx_and_wait())
            self._wait_nginx_config(render.render_lab(self.config).config_id)
        elif role == "php":
            since = time.time()
            self.engine.signal(self._container("php"), "SIGUSR2")
            self._wait_fpm_ready(since, START_LIMIT)
        else:
            raise LabkitError(f"reload takes 'nginx' or 'php', got {role!r}")

    def kill(self, role: str, signal: str = "SIGKILL") -> None:
        """Send a signal to a server's main process, as a crash or an operator would.

        Args:
            role: ``php`` or ``nginx``.
            signal: For example ``SIGKILL`` (a crash) or ``SIGTERM`` (a stop).
        """
        self.engine.signal(self._container(role), signal)

    def address(self, role: str) -> str | None:
        """Return a container's address on the lab network.

        In `pod`, Nginx and PHP-FPM share the holder's address.
        """
        if self.topology == "pod" and role in ("php", "nginx"):
            role = "holder"
        return self.engine.address(self._container(role), f"labkit-{self.name}")

    def start_remote(self) -> str:
        """Start a third container on the lab network, in the role of another host.

        It has Nginx's image (with `cgi-fcgi` and `curl`) and runs nothing, so
        `run("remote", [...])` can try to reach PHP-FPM from outside its host.

        Returns:
            The remote host's address on the lab network.
        """
        if "remote" not in self._containers:
            images = require_images(self.engine)
            self._containers["remote"] = self.engine.create_container(
                {},
                image=images.nginx,
                command=["sleep", "infinity"],
                init=True,
                name=f"labkit-{self.name}-remote",
                labels=self._labels("remote"),
                network=f"labkit-{self.name}",
                hostname="remote",
                mem_limit="64m",
                pids_limit=32,
                **HARDENING,
            )
        address = self.address("remote")
        assert address is not None
        return address

    def run(self, role: str, command: Sequence[str], user: str = "root") -> str:
        """Run a command in the `php` or `nginx` container and return its output.

        Raises:
            LabkitError: The command exited non-zero (its output is in the message).
        """
        code, output = self.engine.exec(self._container(role), list(command), user=user)
        if code != 0:
            raise LabkitError(f"`{' '.join(command)}` as {user} in {role} exited {code}:\n{output}")
        return output

    def copy_out(self, role: str, path: str, target: str | os.PathLike[str]) -> None:
        """Copy a directory out of a container into `target` (for the doctor, or to keep)."""
        self.engine.copy_out(self._container(role), path, os.fspath(target))

    def logs(self, role: str, lines: int = 20) -> str:
        """Return the last lines a container printed (PHP-FPM's log, or Nginx's error log)."""
        return self.engine.log_tail(self._container(role), lines, stdout=role != "nginx")

    def socket_listing(self) -> str:
        """Return `ls -l` of the socket directory as Nginx's container sees it."""
        return self.run("nginx", ["ls", "-l", SOCKET_DIR])

    def status(self) -> dict[str, object]:
        """Return the lab's name, topology, URL, and each container's state and start time."""
        states = self._describe_containers()
        status: dict[str, object] = {
            "name": self.name,
            "topology": self.topology,
            "url": self.url if self.port else "(not published: the front container is down)",
            "containers": states,
        }
        stopped = _stopped(states)
        if stopped:
            status["attention"] = _stopped_text(stopped)
        if self._drift:
            status["drift"] = self._drift
        return status

    def _find_drift(self) -> str:
        """Compare the files in the containers with the recorded configuration's.

        An apply interrupted between its two containers (a killed process) leaves one side
        new and the other old; `reset()` or a new apply puts both sides in step again.
        """
        expected = render.render_lab(self.config)
        for role, files in (("php", expected.fpm), ("nginx", expected.nginx)):
            for path, text in files.items():
                container = self._containers.get(role)
                if container is not None and self.engine.read_file(container, path) != text:
                    return (
                        f"{path} differs from the lab's record (an apply cut short?); run reset()"
                    )
        return ""

    # Internals: starting

    def _labels(self, role: str) -> dict[str, str]:
        return {
            KIT_LABEL: "labkit",
            LAB_LABEL: self.name,
            ROLE_LABEL: role,
            TOPOLOGY_LABEL: self.topology,
            SESSION_LABEL: SESSION_ID,
            PID_LABEL: str(os.getpid()),
            HOST_LABEL: socket.gethostname(),
            CREATED_LABEL: f"{time.time():.3f}",
            DETACHED_LABEL: "1" if self._detached else "0",
            PID_START_LABEL: _process_start(os.getpid()),
            **({RUN_LABEL: os.environ[RUN_ENV]} if os.environ.get(RUN_ENV) else {}),
        }

    def _start_failure(self, error: BaseException) -> BaseException:
        if self._fixed_port and "address already in use" in str(error):
            return BackendError(
                f"port {self._fixed_port} on 127.0.0.1 is taken by another program; "
                "choose another port, or leave port=None for a free one"
            )
        return error

    def _sweep_leftovers(self, replace: bool) -> None:
        owner = _live_owner(self.engine, self.name)
        if owner == "cli" and not replace:
            raise LabInUse(
                f"lab {self.name!r} was started with `labkit up` and is running; remove it "
                f"first (`labkit down --lab {self.name}`), or replace it (`labkit up --replace`)"
            )
        if owner and owner not in ("cli", SESSION_ID):
            raise LabInUse(
                f"lab {self.name!r} belongs to another running process on this host; "
                "choose another name, or stop that one first (its down(), or "
                f"`labkit down --lab {self.name}`)"
            )
        removed = self.engine.remove_objects({LAB_LABEL: self.name})
        if removed and owner == "cli":
            logger.warning("lab %s: replaced the running lab `labkit up` started", self.name)
        elif removed:
            logger.warning("lab %s: removed %d objects left by an earlier run", self.name, removed)

    def _create_shared(self) -> None:
        self.engine.create_volume(f"labkit-{self.name}-sockets", self._labels("sockets"))
        self.engine.create_network(f"labkit-{self.name}", self._labels("network"))

    def _start_servers(self, images: LabImages, rendered: render.RenderedLab) -> None:
        network = f"labkit-{self.name}"
        published = {"80/tcp": ("127.0.0.1", self._fixed_port)}
        if self.topology == "pod":
            holder = self.engine.create_container(
                {},
                image=images.nginx,
                command=["sleep", "infinity"],
                init=True,
                name=f"labkit-{self.name}-holder",
                labels=self._labels("holder"),
                network=network,
                ports=published,
                hostname=self.name,
                mem_limit="32m",
                pids_limit=16,
                **HARDENING,
            )
            self._containers["holder"] = holder
            fpm_net: dict[str, Any] = {"network_mode": f"container:{holder.id}"}
            nginx_net: dict[str, Any] = dict(fpm_net)
        else:
            fpm_net = self._network_spec(network, "php")
            nginx_net = {**self._network_spec(network, "nginx"), "ports": published}
        state = self._state_files(self.config, "")
        self._create_servers(
            {
                "php": ({**rendered.fpm, **state}, images.fpm, fpm_net, SERVER_CAPABILITIES),
                "nginx": (
                    {**rendered.nginx, **state},
                    images.nginx,
                    nginx_net,
                    [*SERVER_CAPABILITIES, "NET_BIND_SERVICE"],
                ),
            }
        )
        self.port = self.engine.published_port(self._front())

    def _create_servers(self, specs: dict[str, _ServerSpec]) -> None:
        # Nginx resolves a host name in fastcgi_pass when it starts, so it must then wait for
        # PHP-FPM's container; with a socket or an address the two start side by side.
        upstream = self.config.nginx.upstream
        in_order = not isinstance(upstream, UnixSocket) and not _is_ip(upstream.host)
        volumes = {f"labkit-{self.name}-sockets": {"bind": SOCKET_DIR, "mode": "rw"}}
        with ThreadPoolExecutor(max_workers=1 if in_order else 2) as pool:
            futures = {
                role: pool.submit(
                    self.engine.create_container,
                    files,
                    image=image,
                    name=f"labkit-{self.name}-{role}",
                    labels=self._labels(role),
                    cap_add=capabilities,
                    detach=True,
                    volumes=volumes,
                    **net,
                    **LIMITS,
                    **HARDENING,
                )
                for role, (files, image, net, capabilities) in specs.items()
            }
            for role, future in futures.items():
                self._containers[role] = future.result()

    def _network_spec(self, network: str, alias: str) -> dict[str, Any]:
        return {
            "network": network,
            "networking_config": {network: self.engine.endpoint([alias])},
            "hostname": alias,
        }

    def _front(self) -> Container:
        return self._containers["holder" if self.topology == "pod" else "nginx"]

    def _container(self, role: str) -> Container:
        if not self._containers:
            raise LabkitError(
                f"lab {self.name!r} is not running (never started, or down() removed it); "
                "start it with up(), or the panel's Start button"
            )
        if role not in self._containers:
            roles = ", ".join(sorted(self._containers))
            raise LabkitError(f"lab {self.name!r} has no {role!r} container (it has: {roles})")
        return self._containers[role]

    def _register_atexit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self.down)
            self._atexit_registered = True

    def _check_upstreams(self, config: LabConfig) -> None:
        """Refuse a TCP `fastcgi_pass` that leads out of the lab.

        Nginx connects wherever `fastcgi_pass` points; a lab must only ever reach itself:
        loopback, its own host names, or an address on its own network.

        Raises:
            ConfigError: The address is outside the lab.
        """
        upstreams = [("nginx", config.nginx.upstream)]
        upstreams += [(f"site {s.server_name!r}", s.upstream) for s in config.sites]
        for subject, upstream in upstreams:
            if not isinstance(upstream, TcpAddress) or _inside_lab(upstream.host, None):
                continue
            # Only an address that is neither loopback nor a lab name needs the lab's subnet.
            subnet = self.engine.subnet(f"labkit-{self.name}") if self._containers else None
            if not _inside_lab(upstream.host, subnet):
                allowed = "loopback, a lab host (php, nginx, remote, localhost) or an address on"
                raise ConfigError(
                    subject, "fastcgi_pass", f"{allowed} the lab network {subnet or ''}".strip(),
                    upstream.nginx_form(),
                )  # fmt: skip

    def _state_files(self, config: LabConfig, last_diff: str) -> dict[str, str]:
        """Return the state file that lets `attach()` pick the lab up from another process.

        It is written into every container an apply touches, with a time stamp, and `attach()`
        believes the newest copy.
        """
        state = {"written": time.time(), "config": config_to_dict(config), "last_diff": last_diff}
        return {STATE_FILE: json.dumps(state, indent=1)}

    # Internals: applying

    def _switch(self, change: _Change, state: dict[str, str]) -> None:
        """Test every changed side, install it, restart or reload, and roll back on failure."""
        roles = change.roles()
        if len(roles) == 2:
            # Both sides change: test Nginx first, so a refusal leaves PHP-FPM untouched too.
            self._run_checked("nginx", _test_script("nginx", change.candidate.nginx, None))
        since = time.time()
        address_before = self.address("php")
        try:
            if "php" in roles:
                self._install_fpm(change, state, since)
            if "nginx" in roles or self.address("php") != address_before:
                # Nginx resolves `php` when it loads its configuration, so a PHP-FPM that came
                # back on another address needs a reload even when the site did not change.
                self._install_nginx(change.candidate.nginx, change.new, state)
        except ConfigRejected:
            raise
        except LabkitError as error:
            # PHP-FPM's own log says why it stopped; Nginx's error log (not its access log)
            # says why a reload failed.
            tail = self.logs("php", 12) + "\n" + self.logs("nginx", 6)
            self._rollback(change)
            reason = error.args[0].splitlines()[0] if error.args else type(error).__name__
            message = f"lab {self.name!r}: the new configuration did not come up: {reason}"
            raise ApplyFailed(message, tail.strip()) from error

    def _install_fpm(self, change: _Change, state: dict[str, str], since: float) -> None:
        restart = "php-fpm restart" in change.actions
        stale = sorted(set(change.old.fpm) - set(change.new.fpm))
        script = _test_script(
            "php", change.candidate.fpm, {**change.new.fpm, **state}, stale,
            signal=None if restart else "USR2",
        )  # fmt: skip
        self._run_checked("php", script)
        if restart:
            self.engine.restart(self._container("php"), timeout=5)
        self._wait_fpm_ready(since, START_LIMIT)

    def _install_nginx(
        self, candidate: dict[str, str], files: render.RenderedLab, state: dict[str, str]
    ) -> None:
        script = _test_script("nginx", candidate, {**files.nginx, **state})
        self._run_checked("nginx", script + scripts.reload_nginx_and_wait())
        self._wait_nginx_config(files.config_id)

    def _run_checked(self, role: str, script: str) -> str:
        """Run a script from `labkit.scripts`; a failed config test raises `ConfigRejected`."""
        code, output = self._exec_script(role, script)
        if code == scripts.TEST_FAILED:
            tool = "php-fpm" if role == "php" else "nginx"
            raise ConfigRejected(tool, output.replace(scripts.TEST_FAILED_MARK, "").strip())
        if code != 0:
            raise LabkitError(
                f"installing the configuration in {role} failed (exit {code}): {output}"
            )
        return output

    def _exec_script(self, role: str, script: str) -> tuple[int, str]:
        code, output = self.engine.exec(self._container(role), ["sh", "-c", script])
        return code, _real_paths(output.strip())

    def _rollback(self, change: _Change) -> None:
        logger.warning("lab %s: rolling back to the last good configuration", self.name)
        fpm = self._container("php")
        old_state = self._state_files(change.old_config, self._last_diff)
        added = sorted(set(change.new.fpm) - set(change.old.fpm))
        if self.engine.state(fpm) == "running":
            self._run_checked("php", scripts.install_files({**change.old.fpm, **old_state}, added))
        else:
            # A stopped container takes copied files but runs nothing; an empty include is harmless.
            self.engine.put_files(fpm, {**change.old.fpm, **old_state, **dict.fromkeys(added, "")})
        self.engine.restart(fpm, timeout=5)
        self._wait_fpm_ready(time.time() - 0.5, START_LIMIT)
        self._install_nginx(
            render.render_lab(change.old_config, candidate=True).nginx, change.old, old_state
        )

    # Internals: waiting

    def _wait_fpm_ready(self, since: float, limit: float) -> None:
        fpm = self._container("php")

        def ready() -> str | None:
            lines = self.engine.logs_since(fpm, since)
            if any(FPM_READY in line for line in lines):
                return "ready"
            state = self.engine.state(fpm)
            return None if state == "running" else state

        result = poll(ready, limit, interval=0.01)
        if result is not None and result != "ready":
            raise ServerStopped(f"PHP-FPM stopped while starting (container {result})")
        if result != "ready":
            state = self.engine.state(fpm)
            raise LabTimeout(
                "PHP-FPM to log 'ready to handle connections'",
                limit,
                state,
                self.engine.log_tail(fpm),
            )

    def _wait_nginx_config(self, config_id: str, limit: float = START_LIMIT) -> None:
        nginx = self._container("nginx")

        def answering() -> bool | None:
            try:
                return (
                    True
                    if send_request(self.port, "/index.html", 2.0).config_id == config_id
                    else None
                )
            except LabkitError:
                return None

        if not poll(answering, limit, interval=0.01):
            state = self.engine.state(nginx)
            raise LabTimeout(
                f"Nginx to answer with configuration {config_id}",
                limit,
                state,
                self.engine.log_tail(nginx),
            )


@dataclass(frozen=True)
class _Change:
    """One apply: both configurations, their files, the candidates to test, what must happen."""

    old_config: LabConfig
    new_config: LabConfig
    old: render.RenderedLab
    new: render.RenderedLab
    candidate: render.RenderedLab
    actions: tuple[str, ...]

    @classmethod
    def between(
        cls, old: LabConfig, new: LabConfig, fpm_action: FpmAction = "auto", force: bool = False
    ) -> _Change:
        old_files, new_files = render.render_lab(old), render.render_lab(new)
        candidate = render.render_lab(new, candidate=True)
        if force:
            return cls(
                old, new, old_files, new_files, candidate, ("php-fpm restart", "nginx reload")
            )
        actions: list[str] = []
        if old_files.fpm != new_files.fpm:
            restart = _needs_restart(old, new) if fpm_action == "auto" else fpm_action == "restart"
            actions.append("php-fpm restart" if restart else "php-fpm reload")
        if old_files.nginx != new_files.nginx:
            actions.append("nginx reload")
        return cls(old, new, old_files, new_files, candidate, tuple(actions))

    def roles(self) -> list[str]:
        roles = ["php"] if any(a.startswith("php-fpm") for a in self.actions) else []
        return roles + (["nginx"] if "nginx reload" in self.actions else [])


def _test_script(
    role: str,
    candidate: Mapping[str, str],
    install: Mapping[str, str] | None,
    remove: Sequence[str] = (),
    signal: str | None = None,
    dump: bool = False,
) -> str:
    main = render.FPM_CANDIDATE if role == "php" else render.NGINX_CANDIDATE
    # `-tt` and `-T` also print the configuration as the tool understood it.
    flag = ("-tt" if role == "php" else "-T") if dump else "-t"
    command = ["php-fpm8.2", flag, "-y", main] if role == "php" else ["nginx", flag, "-c", main]
    return scripts.test_and_install(command, candidate, _tops(candidate), install, remove, signal)


def _needs_restart(old: LabConfig, new: LabConfig) -> bool:
    if [p.name for p in old.pools] != [p.name for p in new.pools]:
        return True
    for before, after in zip(old.pools, new.pools, strict=True):
        changed = set(before.directives) ^ set(after.directives)
        if any(key in RESTART_DIRECTIVES for key, _ in changed):
            return True
    return False


LAB_HOSTS = frozenset({"php", "nginx", "remote", "localhost"})
_NAME_LOCKS: dict[str, threading.Lock] = {}
_NAME_LOCKS_GUARD = threading.Lock()


def _name_lock(name: str) -> threading.Lock:
    """Return the lock that lets one thread of this process at a time start lab `name`."""
    with _NAME_LOCKS_GUARD:
        return _NAME_LOCKS.setdefault(name, threading.Lock())


def _inside_lab(host: str | None, subnet: str | None) -> bool:
    if host is None or host in LAB_HOSTS:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if address.is_loopback or (
        address.version == 6 and address.ipv4_mapped and address.ipv4_mapped.is_loopback
    ):
        return True
    return subnet is not None and address in ipaddress.ip_network(subnet)


def _is_ip(host: str | None) -> bool:
    try:
        ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return True


def _tops(files: Mapping[str, str]) -> list[str]:
    """Return the candidate files and directories to remove after a test."""
    tops = {
        render.POOL_CANDIDATE_DIR if p.startswith(render.POOL_CANDIDATE_DIR + "/") else p
        for p in files
    }
    return sorted(tops)


def _real_paths(output: str) -> str:
    """Name the files in a tool's message by the paths a learner knows, not the candidates'."""
    # PHP-FPM prints each line twice under `-t` here (to stderr and to error_log, which is
    # stderr too); one copy is enough.
    lines = output.splitlines()
    output = "\n".join(line for i, line in enumerate(lines) if i == 0 or line != lines[i - 1])
    for candidate, real in (
        (render.NGINX_SITE_CANDIDATE + "-", "/etc/nginx/sites-available/"),
        (render.POOL_CANDIDATE_DIR, render.POOL_DIR),
        (render.FPM_CANDIDATE, render.FPM_MAIN),
        (render.NGINX_SITE_CANDIDATE, render.NGINX_SITE),
        (render.NGINX_CANDIDATE, render.NGINX_MAIN),
    ):
        output = output.replace(candidate, real)
    return output


def _log_progress(line: str) -> None:
    logger.debug("%s", line)


def list_labs(engine: Engine | None = None) -> list[LabInfo]:
    """Return every lab on the engine, from the labels of its objects."""
    if engine is None:
        with Engine() as own:
            return list_labs(own)
    found: dict[str, list[dict[str, str]]] = {}
    for labels in engine.list_labels(LAB_LABEL):
        found.setdefault(labels[LAB_LABEL], []).append(labels)
    labs = []
    for name, objects in sorted(found.items()):
        containers = [
            o for o in objects if o.get(ROLE_LABEL) in ("php", "nginx", "holder", "remote")
        ]
        first = objects[0]
        created = min(float(o.get(CREATED_LABEL, "0") or 0) for o in objects)
        labs.append(
            LabInfo(
                name,
                first.get(TOPOLOGY_LABEL, "?"),
                len(containers),
                created,
                first.get(SESSION_LABEL, "?"),
            )
        )
    return labs


def remove_all_labs(engine: Engine | None = None) -> int:
    """Remove every object of every lab; return how many were removed."""
    if engine is None:
        with Engine() as own:
            return own.remove_objects({KIT_LABEL: "labkit"})
    return engine.remove_objects({KIT_LABEL: "labkit"})


def reap_orphans(engine: Engine, grace: float = REAP_GRACE) -> list[str]:
    """Remove labs whose owning process on this host is gone, once they are `grace` seconds old.

    A kernel killed with SIGKILL runs no clean-up; its labs carry the owner's pid, the pid's
    start time and the host name, so any later `up()` on the same host can tell that the owner
    is gone (and not merely a new process that reuses the pid). Labs started by the CLI
    (`detached`) belong to nobody and stay until `labkit down`.

    Returns:
        The names of the labs removed.
    """
    owners: dict[str, dict[str, str]] = {}
    for labels in engine.list_labels(LAB_LABEL):
        if labels.get(LAB_LABEL):
            owners.setdefault(labels[LAB_LABEL], labels)
    reaped = []
    for name, labels in sorted(owners.items()):
        if _is_orphan(labels, grace):
            engine.remove_objects({LAB_LABEL: name, SESSION_LABEL: labels.get(SESSION_LABEL, "")})
            logger.warning("reaped lab %s: its owner (pid %s) is gone", name, labels.get(PID_LABEL))
            reaped.append(name)
    return reaped


def _live_owner(engine: Engine, name: str) -> str | None:
    """Return who holds lab `name`: a live process's session, "cli" for a detached lab, or None.

    A lab started by `labkit up` belongs to nobody alive, and is kept until `labkit down`.
    """
    for labels in engine.list_labels(LAB_LABEL):
        if labels.get(LAB_LABEL) != name or labels.get(ROLE_LABEL) != "php":
            continue
        if labels.get(DETACHED_LABEL) == "1":
            return "cli"
        if labels.get(HOST_LABEL) == socket.gethostname() and not _is_orphan(labels, 0.0):
            return labels.get(SESSION_LABEL)
    return None


def unique_name(prefix: str) -> str:
    """Return a lab name no other kernel will pick, e.g. for a notebook's lab."""
    return f"{check_lab_name(prefix)[:30]}-{uuid.uuid4().hex[:6]}"


def _is_orphan(labels: Mapping[str, str], grace: float) -> bool:
    if labels.get(DETACHED_LABEL, "1") != "0" or labels.get(HOST_LABEL) != socket.gethostname():
        return False
    if time.time() - float(labels.get(CREATED_LABEL, "0") or 0) < grace:
        return False
    pid = labels.get(PID_LABEL, "")
    return not pid.isdigit() or _process_start(int(pid)) != labels.get(PID_START_LABEL)


def _process_start(pid: int) -> str:
    """Return when a process started (clock ticks since boot), or "" if it does not exist."""
    # Limitation: without /proc (macOS) every owner reads as "", so labs are never reaped there.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return ""
    return fields[19] if len(fields) > 19 else ""


def _stopped(described: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Return the containers that are not running, or sit in a dead network namespace."""
    stopped = {role: d["state"] for role, d in described.items() if d["state"] != "running"}
    holder = described.get("holder")
    if holder and holder["state"] == "running":
        for role in ("php", "nginx"):
            if role in described and described[role]["started_at"] < holder["started_at"]:
                stopped.setdefault(role, "cut off (the holder restarted)")
    return stopped


def _stopped_text(stopped: Mapping[str, str]) -> str:
    servers = ", ".join(f"{role} is {state}" for role, state in sorted(stopped.items()))
    if "removed" in stopped.values():
        return f"the lab noticed: {servers}; run up() again to rebuild it"
    return f"the lab noticed: {servers}; lab.repair() (or `labkit repair`) starts it again"
