"""The only module that talks to the Docker engine (through the docker SDK).

Everything above it handles containers as opaque handles and gets `BackendError` instead of
SDK exceptions.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

import docker
import docker.errors
import requests.exceptions

from labkit.errors import BackendError
from labkit.wait import poll

logger = logging.getLogger(__name__)

KIT_LABEL = "labkit.kit"
LAB_LABEL = "labkit.lab"
ROLE_LABEL = "labkit.role"

Container = Any
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
ENGINE_HELP = (
    "No Docker engine is reachable. On Debian as root, `make engine` installs docker.io and "
    "starts dockerd; elsewhere start Docker (or Docker Desktop) and check `docker info`."
)


@contextmanager
def engine_errors(action: str) -> Iterator[None]:
    """Turn docker SDK and transport exceptions into `BackendError` naming the action."""
    try:
        yield
    except docker.errors.NotFound as error:
        raise BackendError(f"{action}: not found ({error.explanation})") from error
    except docker.errors.APIError as error:
        raise BackendError(f"{action}: the engine refused: {error.explanation}") from error
    except docker.errors.DockerException as error:
        raise BackendError(f"{action}: {error}\n{ENGINE_HELP}") from error
    except requests.exceptions.RequestException as error:
        raise BackendError(f"{action}: {error}\n{ENGINE_HELP}") from error


class Engine:
    """A connection to one Docker engine, with the few operations labs need."""

    def __init__(self, client: Any | None = None) -> None:
        if client is None:
            _check_unix_socket(os.environ.get("DOCKER_HOST", DEFAULT_DOCKER_HOST))
        with engine_errors("connecting to the Docker engine"):
            self.client = client or docker.from_env(timeout=120)
        try:
            with engine_errors("connecting to the Docker engine"):
                self.client.ping()
        except BackendError:
            self.client.close()
            raise

    def close(self) -> None:
        """Close the connection to the engine."""
        self.client.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Images

    def image_labels(self, tag: str) -> dict[str, str] | None:
        """Return an image's labels, or None when the engine does not have it."""
        try:
            image = self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            return None
        with engine_errors(f"inspecting image {tag}"):
            return dict(image.labels or {})

    def image_id(self, tag: str) -> str | None:
        try:
            return str(self.client.images.get(tag).id)
        except docker.errors.ImageNotFound:
            return None

    def try_pull(self, reference: str) -> bool:
        """Pull an image; return False (and log why) when no registry answers."""
        repository, _, tag = reference.partition(":")
        try:
            self.client.images.pull(repository, tag=tag or None)
        except docker.errors.APIError as error:
            logger.info("pull of %s failed: %s", reference, error.explanation)
            return False
        return True

    def import_rootfs(self, tar_path: str, reference: str) -> None:
        """Import a root file system tarball as an image under `reference`."""
        repository, _, tag = reference.partition(":")
        with engine_errors(f"importing {reference}"):
            self.client.api.import_image_from_file(tar_path, repository=repository, tag=tag)

    def build(
        self,
        context: str,
        dockerfile: str,
        tag: str,
        labels: Mapping[str, str],
        progress: Callable[[str], None],
    ) -> None:
        """Build an image, passing each line of build output to `progress`.

        Raises:
            BackendError: The build failed; the message holds the failing step's output.
        """
        lines: list[str] = []
        with engine_errors(f"building {tag}"):
            stream = self.client.api.build(
                path=context, dockerfile=dockerfile, tag=tag, labels=dict(labels),
                rm=True, forcerm=True, decode=True,
            )  # fmt: skip
            for chunk in stream:
                if "error" in chunk:
                    tail = "".join(lines[-15:])
                    raise BackendError(f"building {tag} failed: {chunk['error']}\n{tail}")
                text = chunk.get("stream") or chunk.get("status") or ""
                if text.strip():
                    lines.append(text)
                    progress(text.rstrip("\n"))

    # Lab objects

    def create_network(self, name: str, labels: Mapping[str, str]) -> None:
        with engine_errors(f"creating network {name}"):
            self.client.networks.create(name, driver="bridge", labels=dict(labels))

    def subnet(self, network: str) -> str | None:
        """Return a network's IPv4 subnet, e.g. ``172.18.0.0/16``, or None if it has none."""
        with engine_errors(f"inspecting network {network}"):
            config = self.client.networks.get(network).attrs.get("IPAM", {}).get("Config") or []
        return next((c["Subnet"] for c in config if "." in c.get("Subnet", "")), None)

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        with engine_errors(f"creating volume {name}"):
            self.client.volumes.create(name, labels=dict(labels))

    def create_container(self, files: Mapping[str, str], **spec: Any) -> Container:
        """Create a container, copy `files` into it, and start it."""
        name = spec.get("name", "container")
        with engine_errors(f"starting {name}"):
            container = self.client.containers.create(**spec)
            if files:
                self.put_files(container, files)
            container.start()
            return container

    def endpoint(self, aliases: list[str]) -> Any:
        """Return a network endpoint config that gives a container extra DNS names."""
        return self.client.api.create_endpoint_config(aliases=aliases)

    def get_container(self, name: str) -> Container | None:
        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            return None

    def find_containers(self, labels: Mapping[str, str]) -> list[Container]:
        with engine_errors("listing containers"):
            return list(
                self.client.containers.list(
                    all=True, filters=_label_filter(labels), ignore_removed=True
                )
            )

    def remove_objects(self, labels: Mapping[str, str]) -> int:
        """Remove every container, then network and volume, carrying all of `labels`.

        Returns:
            How many objects were removed.
        """
        removed = 0
        filters = _label_filter(labels)
        with engine_errors("removing lab objects"):
            for container in self.client.containers.list(
                all=True, filters=filters, ignore_removed=True
            ):
                _ignore_missing(partial(container.remove, force=True, v=True))
                removed += 1
            # Another process may be removing the same containers; networks and volumes can
            # only go once every container using them is gone.
            poll(
                lambda: None if self.client.containers.list(all=True, filters=filters) else True, 20
            )
            for network in self.client.networks.list(filters=filters):
                _ignore_missing(network.remove)
                removed += 1
            for volume in self.client.volumes.list(filters=filters):
                _ignore_missing(partial(volume.remove, force=True))
                removed += 1
        return removed

    def list_labels(self, key: str) -> list[dict[str, str]]:
        """Return the labels of every container, network and volume that has label `key`."""
        filters = {"label": [key]}
        with engine_errors("listing lab objects"):
            found = [
                c.labels
                for c in self.client.containers.list(all=True, filters=filters, ignore_removed=True)
            ]
            found += [
                n.attrs.get("Labels") or {} for n in self.client.networks.list(filters=filters)
            ]
            found += [
                v.attrs.get("Labels") or {} for v in self.client.volumes.list(filters=filters)
            ]
        return [dict(labels) for labels in found]

    def usage(self, labels: Mapping[str, str]) -> tuple[int, int]:
        """Return the memory in use (without page cache) and the bytes written, in bytes,
        of the containers carrying all of `labels`."""
        memory = written = 0
        with engine_errors("measuring lab containers"):
            for container in self.find_containers(labels):
                stats = container.stats(stream=False)["memory_stats"]
                memory += stats.get("usage", 0) - stats.get("stats", {}).get("cache", 0)
            for row in self.client.api.containers(
                all=True, size=True, filters=_label_filter(labels)
            ):
                written += row.get("SizeRw", 0) or 0
        return memory, written

    def image_size(self, tag: str) -> int:
        with engine_errors(f"inspecting image {tag}"):
            return int(self.client.images.get(tag).attrs["Size"])

    # Inside containers

    def put_files(self, container: Container, files: Mapping[str, str]) -> None:
        """Write text files at absolute paths inside a container (running or not)."""
        with engine_errors(f"writing files into {container.name}"):
            container.put_archive("/", _tar_of(files))

    def read_file(self, container: Container, path: str) -> str | None:
        """Return a file's text from a container (running or not), or None if it is absent."""
        try:
            chunks, _ = container.get_archive(path)
        except docker.errors.NotFound:
            return None
        with engine_errors(f"reading {path} from {container.name}"):
            data = b"".join(chunks)
            with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                member = archive.extractfile(archive.getmembers()[0])
                return member.read().decode() if member else None

    def copy_out(self, container: Container, path: str, target: str) -> None:
        """Copy a directory tree out of a container into `target`, keeping its absolute path."""
        with engine_errors(f"copying {path} out of {container.name}"):
            chunks, _ = container.get_archive(path)
            data = b"".join(chunks)
        parent = os.path.join(target, os.path.dirname(path.rstrip("/")).lstrip("/"))
        os.makedirs(parent, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            archive.extractall(parent, filter="tar")

    def exec(self, container: Container, command: list[str], user: str = "root") -> tuple[int, str]:
        """Run a command in a running container; return its exit code and combined output."""
        with engine_errors(f"running {command[0]} in {container.name}"):
            code, output = container.exec_run(command, user=user, stderr=True, stdout=True)
            return int(code), output.decode(errors="replace")

    def signal(self, container: Container, name: str) -> None:
        with engine_errors(f"sending {name} to {container.name}"):
            container.kill(signal=name)

    def restart(self, container: Container, timeout: int = 5) -> None:
        with engine_errors(f"restarting {container.name}"):
            container.restart(timeout=timeout)

    def start(self, container: Container) -> None:
        with engine_errors(f"starting {container.name}"):
            container.start()

    def state(self, container: Container) -> str:
        """Return `running`, `exited`, ... or `removed` once the container is gone."""
        try:
            container.reload()
        except docker.errors.NotFound:
            return "removed"
        return str(container.attrs["State"]["Status"])

    def describe(self, container: Container) -> dict[str, str]:
        """Return a container's state and when it last started (changes on every restart)."""
        state = self.state(container)
        if state == "removed":
            return {"state": state, "started_at": ""}
        return {"state": state, "started_at": str(container.attrs["State"]["StartedAt"])}

    def published_port(self, container: Container, port: str = "80/tcp") -> int:
        with engine_errors(f"reading the published port of {container.name}"):
            container.reload()
            bindings = container.attrs["NetworkSettings"]["Ports"].get(port) or []
        if not bindings:
            raise BackendError(f"{container.name} publishes no port for {port}")
        return int(bindings[0]["HostPort"])

    def address(self, container: Container, network: str) -> str | None:
        """Return a container's IPv4 address on `network`, or None."""
        container.reload()
        networks = container.attrs["NetworkSettings"]["Networks"] or {}
        return (networks.get(network) or {}).get("IPAddress") or None

    def logs_since(self, container: Container, since: float, stdout: bool = True) -> list[str]:
        """Return the log lines a container wrote at or after `since` (a time.time() value)."""
        with engine_errors(f"reading logs of {container.name}"):
            raw = container.logs(
                stdout=stdout, stderr=True, timestamps=True, since=max(since - 1.0, 0.001)
            )
        lines = []
        for line in raw.decode(errors="replace").splitlines():
            stamp, _, text = line.partition(" ")
            if _log_time(stamp) >= since:
                lines.append(text)
        return lines

    def log_tail(self, container: Container, lines: int = 15, stdout: bool = True) -> str:
        """Return the last lines a container printed, for error messages."""
        try:
            raw = container.logs(tail=lines, stdout=stdout, stderr=True)
            return str(raw.decode(errors="replace")).rstrip()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            return f"(log unavailable: {error})"


def _check_unix_socket(host: str) -> None:
    """Fail early, and cleanly, when a unix socket engine address has nothing behind it.

    The SDK asks the engine for its API version while it is being built; when that fails it
    raises without closing the socket it opened, which leaks a file descriptor per attempt.
    """
    if not host.startswith("unix://"):
        return
    path = host[len("unix://") :]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError as error:
            raise BackendError(
                f"connecting to the Docker engine at {host}: {error}\n{ENGINE_HELP}"
            ) from error


def _label_filter(labels: Mapping[str, str]) -> dict[str, list[str]]:
    return {"label": [f"{key}={value}" for key, value in labels.items()]}


def _ignore_missing(action: Callable[[], object]) -> None:
    # Objects vanish under us when two sweeps race (a reaper and a `down`): that is fine.
    try:
        action()
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as error:
        if "already in progress" not in str(error.explanation):
            raise


def _tar_of(files: Mapping[str, str]) -> bytes:
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(now)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _log_time(stamp: str) -> float:
    # Docker writes RFC 3339 with nanoseconds; Python's parser takes microseconds at most.
    head, _, rest = stamp.partition(".")
    fraction = rest.rstrip("Z")[:6].ljust(6, "0") if rest else "000000"
    try:
        parsed = datetime.fromisoformat(f"{head}.{fraction}+00:00")
    except ValueError:
        return 0.0
    return parsed.timestamp()
