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
import ipaddress
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from labkit import render
from labkit.backend import KIT_LABEL, LAB_LABEL, ROLE_LABEL, Container, Engine
from labkit.config import (
    RESTART_DIRECTIVES,
    SOCKET_DIR,
    LabConfig,
    Topology,
    UnixSocket,
    check_lab_name,
    check_topology,
    config_from_dict,
    config_to_dict,
)
from labkit.errors import ApplyFailed, ConfigRejected, LabkitError, LabNotFound, LabTimeout
from labkit.images import LabImages, ensure_images, require_images
from labkit.probe import Outcome, probe, read_socket, send_request
from labkit.wait import poll

logger = logging.getLogger(__name__)

SESSION_LABEL = "labkit.session"
PID_LABEL = "labkit.pid"
HOST_LABEL = "labkit.host"
TOPOLOGY_LABEL = "labkit.topology"
CREATED_LABEL = "labkit.created"
SESSION_ID = uuid.uuid4().hex[:12]
STATE_FILE = "/etc/labkit/lab.json"
FPM_READY = "ready to handle connections"
START_LIMIT = 30.0
# Resource limits per container, so one learner's runaway PHP cannot starve a room.
LIMITS: dict[str, Any] = {"mem_limit": "256m", "pids_limit": 256, "cpu_shares": 512}

Progress = Callable[[str], None]


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
    ) -> None:
        self.name = check_lab_name(name)
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
        return self._engine

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def up(self, build: bool = True, detach: bool = False, config: LabConfig | None = None) -> Lab:
        """Start the lab with Debian's default configuration (or `config`).

        Args:
            build: Build missing images first (with progress) instead of failing.
            detach: Leave the lab running when this Python process exits (the CLI's way).
            config: Start from this configuration instead of the default.

        Raises:
            BackendError: The engine is unreachable or refused an operation.
            LabTimeout: A server did not come up in time.
        """
        images = ensure_images(self.engine, self._progress) if build else require_images(self.engine)
        self._sweep_leftovers()
        self.config = config or LabConfig()
        self._last_diff = ""
        self._progress(f"starting lab {self.name} ({self.topology})")
        rendered = render.render_lab(self.config)
        self._create_shared()
        try:
            self._start_servers(images, rendered)
            self._wait_fpm_ready(time.time() - 60, START_LIMIT)
            self._wait_nginx_config(rendered.config_id)
            self._save_state()
        except BaseException:
            self.engine.remove_objects({LAB_LABEL: self.name})
            raise
        if not detach:
            self._register_atexit()
        logger.info("lab %s is up on %s", self.name, self.url)
        return self

    def down(self) -> None:
        """Remove every container, network and volume of this lab."""
        removed = self.engine.remove_objects({LAB_LABEL: self.name})
        self._containers.clear()
        if self._atexit_registered:
            atexit.unregister(self.down)
            self._atexit_registered = False
        logger.info("lab %s removed (%d objects)", self.name, removed)

    @classmethod
    def attach(cls, name: str = "default", engine: Engine | None = None) -> Lab:
        """Return a handle on a lab that is already running (for instance one the CLI started).

        Raises:
            LabNotFound: No lab of that name is on the engine.
        """
        engine = engine or Engine()
        found = engine.find_containers({LAB_LABEL: check_lab_name(name), ROLE_LABEL: "php"})
        if not found:
            raise LabNotFound(f"no lab named {name!r} is running; start it with `labkit up --lab {name}`")
        fpm = found[0]
        lab = cls(name, fpm.labels.get(TOPOLOGY_LABEL, "pod"), engine)
        state = json.loads(engine.read_file(fpm, STATE_FILE) or "{}")
        lab.config = config_from_dict(state.get("config") or config_to_dict(LabConfig()))
        lab._last_diff = state.get("last_diff", "")
        lab._containers = {"php": fpm}
        for role in ("nginx", "holder"):
            containers = engine.find_containers({LAB_LABEL: name, ROLE_LABEL: role})
            if containers:
                lab._containers[role] = containers[0]
        lab.port = engine.published_port(lab._front())
        return lab

    # Configuration

    def apply(
        self,
        pool: Mapping[str, str | None] | None = None,
        nginx: Mapping[str, str | None] | None = None,
        pool_name: str = "www",
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

        Raises:
            ConfigError: A refused value; nothing was touched.
            ConfigRejected: php-fpm -t or nginx -t refused the files; nothing was restarted.
            ApplyFailed: A server did not come back; the lab is back on its last good config.
        """
        new = self.config.with_changes(pool, nginx, pool_name)
        old_files = render.render_lab(self.config)
        new_files = render.render_lab(new)
        actions = _needed_actions(self.config, new, old_files, new_files)
        if not actions:
            return ApplyResult("", ())
        self._test_candidate(new, actions)
        self._switch(old_files, new_files, actions)
        self._last_diff = render.diff_files(old_files.all_files(), new_files.all_files())
        self.config = new
        self._save_state()
        logger.info("lab %s applied: %s", self.name, ", ".join(actions))
        return ApplyResult(self._last_diff, actions)

    def reset(self) -> ApplyResult:
        """Return to Debian's default configuration."""
        default = LabConfig()
        pool = {key: None for key, _ in self.config.pool("www").directives}
        pool.update(dict(default.pool("www").directives))
        nginx = {key: None for key in ("fastcgi_pass", "user", "fastcgi_read_timeout")}
        return self.apply(pool=pool, nginx=nginx)

    def config_text(self) -> dict[str, str]:
        """Return the rendered files, by path: every pool file, nginx.conf and the site."""
        return render.render_lab(self.config).all_files()

    def config_file(self, name: str) -> str:
        """Return one rendered file by the end of its path, e.g. ``pool.d/www.conf``.

        Raises:
            LabkitError: No file, or more than one, ends with `name`.
        """
        files = self.config_text()
        matches = [path for path in files if path == name or path.endswith("/" + name)]
        if len(matches) != 1:
            raise LabkitError(f"{name!r} names {len(matches)} of the lab's files: {', '.join(sorted(files))}")
        return files[matches[0]]

    def diff(self) -> str:
        """Return the unified diff of what the last `apply()` changed."""
        return self._last_diff

    def check(self, tool: str, text: str) -> tuple[bool, str]:
        """Run `php-fpm -t` on a pool file text, or `nginx -t` on a site text, without applying.

        Returns:
            Whether the tool accepted it, and what it printed.
        """
        if tool == "php-fpm":
            files = {render.FPM_CANDIDATE: render.render_fpm_main(render.POOL_CANDIDATE_DIR)}
            files[f"{render.POOL_CANDIDATE_DIR}/check.conf"] = text
            return self._run_test("php", files)
        if tool == "nginx":
            main = render.render_nginx_main(self.config.nginx, render.NGINX_SITE_CANDIDATE, "check")
            files = {render.NGINX_CANDIDATE: main, render.NGINX_SITE_CANDIDATE: text}
            return self._run_test("nginx", files)
        raise ValueError(f"tool must be 'php-fpm' or 'nginx', got {tool!r}")

    # Observation

    def request(self, path: str = "/whoami.php") -> Outcome:
        """Send a GET through Nginx and return its status, cause and log lines.

        Raises:
            ProbeError: Nginx gave no HTTP answer at all.
        """
        upstream = self.config.nginx.upstream
        socket_path = upstream.path if isinstance(upstream, UnixSocket) else None
        return probe(
            self.engine, self.port, self._container("nginx"), self._container("php"), path, socket_path
        )

    def run(self, role: str, command: Sequence[str], user: str = "root") -> str:
        """Run a command in the `php` or `nginx` container and return its output.

        Raises:
            LabkitError: The command exited non-zero (its output is in the message).
        """
        code, output = self.engine.exec(self._container(role), list(command), user=user)
        if code != 0:
            raise LabkitError(f"`{' '.join(command)}` as {user} in {role} exited {code}:\n{output}")
        return output

    def socket_listing(self) -> str:
        """Return `ls -l` of the socket directory as Nginx's container sees it."""
        return self.run("nginx", ["ls", "-l", SOCKET_DIR])

    def status(self) -> dict[str, object]:
        """Return the lab's name, topology, URL, and each container's state and start time."""
        states = {role: self.engine.describe(c) for role, c in self._containers.items()}
        return {"name": self.name, "topology": self.topology, "url": self.url, "containers": states}

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
            CREATED_LABEL: f"{time.time():.0f}",
        }

    def _sweep_leftovers(self) -> None:
        removed = self.engine.remove_objects({LAB_LABEL: self.name})
        if removed:
            logger.warning("lab %s: removed %d objects left by an earlier run", self.name, removed)

    def _create_shared(self) -> None:
        self.engine.create_volume(f"labkit-{self.name}-sockets", self._labels("sockets"))
        self.engine.create_network(f"labkit-{self.name}", self._labels("network"))

    def _start_servers(self, images: LabImages, rendered: render.RenderedLab) -> None:
        network = f"labkit-{self.name}"
        volumes = {f"labkit-{self.name}-sockets": {"bind": SOCKET_DIR, "mode": "rw"}}
        published = {"80/tcp": ("127.0.0.1", None)}
        common = {"detach": True, "volumes": volumes, **LIMITS}
        if self.topology == "pod":
            holder = self.engine.create_container(
                {}, image=images.nginx, command=["sleep", "infinity"], init=True,
                name=f"labkit-{self.name}-holder", labels=self._labels("holder"),
                network=network, ports=published, hostname=self.name, mem_limit="32m",
            )  # fmt: skip
            self._containers["holder"] = holder
            fpm_net: dict[str, Any] = {"network_mode": f"container:{holder.id}"}
            nginx_net: dict[str, Any] = dict(fpm_net)
        else:
            fpm_net = self._network_spec(network, "php")
            nginx_net = {**self._network_spec(network, "nginx"), "ports": published}
        specs = {
            "php": (rendered.fpm, images.fpm, fpm_net),
            "nginx": (rendered.nginx, images.nginx, nginx_net),
        }
        # Nginx resolves a host name in fastcgi_pass when it starts, so it must then wait for
        # PHP-FPM's container; with a socket or an address the two start side by side.
        upstream = self.config.nginx.upstream
        in_order = not isinstance(upstream, UnixSocket) and not _is_ip(upstream.host)
        with ThreadPoolExecutor(max_workers=1 if in_order else 2) as pool:
            futures = {
                role: pool.submit(
                    self.engine.create_container, files, image=image,
                    name=f"labkit-{self.name}-{role}", labels=self._labels(role), **net, **common,
                )  # fmt: skip
                for role, (files, image, net) in specs.items()
            }
            for role, future in futures.items():
                self._containers[role] = future.result()
        self.port = self.engine.published_port(self._front())

    def _network_spec(self, network: str, alias: str) -> dict[str, Any]:
        return {
            "network": network,
            "networking_config": {network: self.engine.endpoint([alias])},
            "hostname": alias,
        }

    def _front(self) -> Container:
        return self._containers["holder" if self.topology == "pod" else "nginx"]

    def _container(self, role: str) -> Container:
        if role not in self._containers:
            raise LabkitError(f"lab {self.name!r} has no {role!r} container; is it up?")
        return self._containers[role]

    def _register_atexit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self.down)
            self._atexit_registered = True

    def _save_state(self) -> None:
        state = {"config": config_to_dict(self.config), "last_diff": self._last_diff}
        self.engine.put_files(self._container("php"), {STATE_FILE: json.dumps(state, indent=1)})

    # Internals: applying

    def _test_candidate(self, new: LabConfig, actions: tuple[str, ...]) -> None:
        candidate = render.render_lab(new, candidate=True)
        if any(a.startswith("php-fpm") for a in actions):
            accepted, output = self._run_test("php", candidate.fpm)
            if not accepted:
                raise ConfigRejected("php-fpm", output)
        if "nginx reload" in actions:
            accepted, output = self._run_test("nginx", candidate.nginx)
            if not accepted:
                raise ConfigRejected("nginx", output)

    def _run_test(self, role: str, files: dict[str, str]) -> tuple[bool, str]:
        container = self._container(role)
        self.engine.put_files(container, files)
        main = next(p for p in files if p in (render.FPM_CANDIDATE, render.NGINX_CANDIDATE))
        tool = ["php-fpm8.2", "-t", "-y", main] if role == "php" else ["nginx", "-t", "-c", main]
        # The candidates are removed in the same exec so `ls /etc/...` never shows them.
        script = '"$@"; code=$?; rm -rf ' + " ".join(_shell_quote(p) for p in _tops(files))
        code, output = self.engine.exec(container, ["sh", "-c", script + "; exit $code", "test", *tool])
        return code == 0, _real_paths(output.strip())

    def _switch(
        self, old: render.RenderedLab, new: render.RenderedLab, actions: tuple[str, ...]
    ) -> None:
        try:
            self._write_and_restart(new, old, actions)
        except LabkitError as error:
            tail = self.engine.log_tail(self._container("php")) + "\n" + self.engine.log_tail(
                self._container("nginx")
            )
            self._rollback(old, new, actions)
            raise ApplyFailed(f"lab {self.name!r}: the new configuration did not come up ({error})", tail) from error

    def _write_and_restart(
        self, files: render.RenderedLab, previous: render.RenderedLab, actions: tuple[str, ...]
    ) -> None:
        since = time.time()
        fpm = self._container("php")
        address_before = self._fpm_address()
        if any(a.startswith("php-fpm") for a in actions):
            self._replace_pool_files(files, previous)
        if "php-fpm restart" in actions:
            self.engine.restart(fpm, timeout=5)
        elif "php-fpm reload" in actions:
            self.engine.signal(fpm, "SIGUSR2")
        if any(a.startswith("php-fpm") for a in actions):
            self._wait_fpm_ready(since, START_LIMIT)
        moved = self._fpm_address() != address_before
        if "nginx reload" in actions or moved:
            # Nginx resolves `php` once per (re)load, so a PHP-FPM that came back on another
            # address needs a reload too.
            self._reload_nginx(files)

    def _reload_nginx(self, files: render.RenderedLab) -> None:
        """Reload Nginx and return once only workers with the new configuration accept.

        A reload returns before the old worker stops accepting: for a moment old and new
        workers share the listening socket, so one answer with the new configuration does not
        mean the next request gets it. The old worker renames itself "is shutting down"
        once it has closed its listening sockets.
        """
        nginx = self._container("nginx")
        old_workers = self._nginx_workers()
        self.engine.put_files(nginx, files.nginx)
        self.engine.signal(nginx, "SIGHUP")

        def replaced() -> bool | None:
            workers = self._nginx_workers()
            return True if workers and not workers & old_workers else None

        if not poll(replaced, START_LIMIT, interval=0.01):
            raise LabTimeout("Nginx's old worker to stop accepting", START_LIMIT,
                             self.engine.state(nginx), self.engine.log_tail(nginx))  # fmt: skip
        self._wait_nginx_config(files.config_id)

    def _nginx_workers(self) -> set[str]:
        """Return the pids of Nginx workers that still accept connections."""
        code, output = self.engine.exec(self._container("nginx"), ["ps", "-eo", "pid=,args="])
        if code != 0:
            return set()
        rows = (line.split(None, 1) for line in output.splitlines() if line.strip())
        return {row[0] for row in rows if len(row) == 2 and row[1].strip() == "nginx: worker process"}

    def _replace_pool_files(self, files: render.RenderedLab, previous: render.RenderedLab) -> None:
        fpm = self._container("php")
        # A pool dropped from the model must leave pool.d, or PHP-FPM would still load it.
        stale = sorted(set(previous.fpm) - set(files.fpm))
        if stale and self.engine.state(fpm) == "running":
            self.engine.exec(fpm, ["rm", "-f", *stale])
        elif stale:
            # A stopped container takes files but runs no `rm`; an empty include is harmless.
            files = render.RenderedLab({**files.fpm, **dict.fromkeys(stale, "")}, {}, "")
        self.engine.put_files(fpm, files.fpm)

    def _rollback(
        self, old: render.RenderedLab, failed: render.RenderedLab, actions: tuple[str, ...]
    ) -> None:
        logger.warning("lab %s: rolling back to the last good configuration", self.name)
        fpm = self._container("php")
        if self.engine.state(fpm) != "running" or any(a.startswith("php-fpm") for a in actions):
            self._replace_pool_files(old, failed)
            self.engine.restart(fpm, timeout=5)
            self._wait_fpm_ready(time.time() - 0.5, START_LIMIT)
        self._reload_nginx(old)

    def _fpm_address(self) -> str | None:
        if self.topology == "pod":
            return None
        return self.engine.address(self._container("php"), f"labkit-{self.name}")

    # Internals: waiting

    def _wait_fpm_ready(self, since: float, limit: float) -> None:
        fpm = self._container("php")

        def ready() -> str | None:
            if any(FPM_READY in line for line in self.engine.logs_since(fpm, since)):
                return "ready"
            state = self.engine.state(fpm)
            return None if state == "running" else state

        result = poll(ready, limit, interval=0.01)
        if result != "ready":
            state = result or self.engine.state(fpm)
            raise LabTimeout("PHP-FPM to log 'ready to handle connections'", limit, state, self.engine.log_tail(fpm))

    def _wait_nginx_config(self, config_id: str, limit: float = START_LIMIT) -> None:
        nginx = self._container("nginx")

        def answering() -> bool | None:
            try:
                return True if send_request(self.port, "/index.html", 2.0).config_id == config_id else None
            except LabkitError:
                return None

        if not poll(answering, limit, interval=0.01):
            state = self.engine.state(nginx)
            raise LabTimeout(f"Nginx to answer with configuration {config_id}", limit, state, self.engine.log_tail(nginx))


def _needed_actions(
    old: LabConfig, new: LabConfig, old_files: render.RenderedLab, new_files: render.RenderedLab
) -> tuple[str, ...]:
    actions: list[str] = []
    if old_files.fpm != new_files.fpm:
        actions.append("php-fpm restart" if _needs_restart(old, new) else "php-fpm reload")
    if old_files.nginx != new_files.nginx:
        actions.append("nginx reload")
    return tuple(actions)


def _needs_restart(old: LabConfig, new: LabConfig) -> bool:
    if [p.name for p in old.pools] != [p.name for p in new.pools]:
        return True
    for before, after in zip(old.pools, new.pools):
        changed = set(before.directives) ^ set(after.directives)
        if any(key in RESTART_DIRECTIVES for key, _ in changed):
            return True
    return False


def _is_ip(host: str | None) -> bool:
    try:
        ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return True


def _tops(files: Mapping[str, str]) -> list[str]:
    """Return the candidate files and directories to remove after a test."""
    tops = {render.POOL_CANDIDATE_DIR if p.startswith(render.POOL_CANDIDATE_DIR + "/") else p for p in files}
    return sorted(tops)


def _real_paths(output: str) -> str:
    """Name the files in a tool's message by the paths a learner knows, not the candidates'."""
    for candidate, real in (
        (render.POOL_CANDIDATE_DIR, render.POOL_DIR),
        (render.FPM_CANDIDATE, render.FPM_MAIN),
        (render.NGINX_SITE_CANDIDATE, render.NGINX_SITE),
        (render.NGINX_CANDIDATE, render.NGINX_MAIN),
    ):
        output = output.replace(candidate, real)
    return output


def _shell_quote(path: str) -> str:
    return "'" + path.replace("'", "'\\''") + "'"


def _log_progress(line: str) -> None:
    logger.debug("%s", line)


def list_labs(engine: Engine | None = None) -> list[LabInfo]:
    """Return every lab on the engine, from the labels of its objects."""
    engine = engine or Engine()
    found: dict[str, list[dict[str, str]]] = {}
    for labels in engine.list_labels(LAB_LABEL):
        found.setdefault(labels[LAB_LABEL], []).append(labels)
    labs = []
    for name, objects in sorted(found.items()):
        containers = [o for o in objects if o.get(ROLE_LABEL) in ("php", "nginx", "holder")]
        first = objects[0]
        created = min(float(o.get(CREATED_LABEL, "0") or 0) for o in objects)
        labs.append(LabInfo(name, first.get(TOPOLOGY_LABEL, "?"), len(containers), created, first.get(SESSION_LABEL, "?")))
    return labs


def remove_all_labs(engine: Engine | None = None) -> int:
    """Remove every object of every lab; return how many were removed."""
    engine = engine or Engine()
    return engine.remove_objects({KIT_LABEL: "labkit"})
