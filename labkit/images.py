"""Build the lab's Nginx and PHP-FPM images, from a registry base or a locally made one.

The Dockerfiles in `docker/` start `FROM debian:bookworm-slim`. Where a registry answers, the
engine pulls that tag; where none does, the same tag is made here with debootstrap from the
Debian mirror apt already uses, then `docker import`. Each lab image is tagged with a hash of
its build inputs (the files in `docker/` and the base image id), so it is rebuilt only when
one of them changes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from labkit.backend import KIT_LABEL, Engine
from labkit.errors import BackendError, ImagesMissing

logger = logging.getLogger(__name__)

BASE_IMAGE = "debian:bookworm-slim"
DOCKER_DIR = Path(__file__).resolve().parent.parent / "docker"
INPUTS_LABEL = "labkit.inputs"
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
FALLBACK_MIRROR = "http://deb.debian.org/debian"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LabImages:
    """The image references one lab runs."""

    fpm: str
    nginx: str


def _quiet(_: str) -> None:
    pass


def image_tags(engine: Engine) -> LabImages:
    """Return the tags the current build inputs give, whether or not they are built.

    Raises:
        ImagesMissing: The base image is not on the engine, so no tag can be computed.
    """
    base = engine.image_id(BASE_IMAGE)
    if base is None:
        raise ImagesMissing(f"base image {BASE_IMAGE} is missing: run `labkit images build`")
    digest = _inputs_digest(base)
    return LabImages(fpm=f"labkit/php-fpm:{digest}", nginx=f"labkit/nginx:{digest}")


def ensure_images(engine: Engine, progress: Progress = _quiet) -> LabImages:
    """Make sure both lab images exist for the current inputs, building what is missing.

    Args:
        engine: The engine to build on.
        progress: Receives one line of text per build step, for a terminal or a panel.

    Returns:
        The image tags to run.

    Raises:
        BackendError: The base could not be pulled or made, or a build failed.
    """
    ensure_base(engine, progress)
    tags = image_tags(engine)
    digest = tags.fpm.rpartition(":")[2]
    for tag, dockerfile in ((tags.fpm, "php-fpm.Dockerfile"), (tags.nginx, "nginx.Dockerfile")):
        if engine.image_labels(tag) is not None:
            progress(f"{tag} is up to date")
            continue
        progress(f"building {tag} from docker/{dockerfile}")
        labels = {KIT_LABEL: "labkit", INPUTS_LABEL: digest}
        engine.build(str(DOCKER_DIR), dockerfile, tag, labels, progress)
        logger.info("built image %s", tag)
    return tags


def require_images(engine: Engine) -> LabImages:
    """Return the lab images' tags, or raise if they are not built.

    Raises:
        ImagesMissing: With the command that builds them.
    """
    tags = image_tags(engine)
    for tag in (tags.fpm, tags.nginx):
        if engine.image_labels(tag) is None:
            raise ImagesMissing(f"image {tag} is not built: run `labkit images build`")
    return tags


def ensure_base(engine: Engine, progress: Progress = _quiet) -> None:
    """Make `debian:bookworm-slim` available: already there, pulled, or made locally.

    Raises:
        BackendError: No registry answered and debootstrap cannot run here.
    """
    if engine.image_id(BASE_IMAGE) is not None:
        return
    progress(f"pulling {BASE_IMAGE}")
    if engine.try_pull(BASE_IMAGE):
        return
    progress(f"no registry reachable: making {BASE_IMAGE} with debootstrap")
    _bootstrap_base(engine, progress)


def _bootstrap_base(engine: Engine, progress: Progress) -> None:
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        raise BackendError(
            f"{BASE_IMAGE} can be neither pulled nor made here: making it needs root and "
            "debootstrap (`apt-get install debootstrap`), or load it with `docker load`."
        )
    mirror = apt_mirror()
    with tempfile.TemporaryDirectory(prefix="labkit-base-") as work:
        root = Path(work) / "rootfs"
        command = ["debootstrap", "--variant=minbase", "bookworm", str(root), mirror]
        _run_streaming(command, progress)
        _copy_apt_sources(root)
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / leftover, ignore_errors=True)
            (root / leftover).mkdir(parents=True, exist_ok=True)
        archive = Path(work) / "rootfs.tar"
        _run_streaming(["tar", "-C", str(root), "-cf", str(archive), "."], progress)
        progress(f"importing {BASE_IMAGE}")
        engine.import_rootfs(str(archive), BASE_IMAGE)


def apt_mirror() -> str:
    """Return the Debian mirror this machine's apt uses for bookworm."""
    for path in APT_SOURCES:
        if not path.is_file():
            continue
        text = path.read_text()
        found = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.MULTILINE)
        found = found or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s+bookworm\b", text, re.MULTILINE
        )
        if found:
            return found.group(1)
    return FALLBACK_MIRROR


def _copy_apt_sources(root: Path) -> None:
    # The image's apt should see what the host's sees (updates and security too).
    for path in APT_SOURCES:
        if path.is_file():
            target = root / path.relative_to("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            if path.name == "debian.sources":
                (root / "etc/apt/sources.list").unlink(missing_ok=True)
            return


def _run_streaming(command: list[str], progress: Progress) -> None:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        tail = [*tail, line.rstrip()][-10:]
        progress(line.rstrip())
    if process.wait() != 0:
        raise BackendError(f"{command[0]} failed (exit {process.returncode}):\n" + "\n".join(tail))


def _inputs_digest(base_id: str) -> str:
    digest = hashlib.sha256(base_id.encode())
    for path in sorted(p for p in DOCKER_DIR.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(DOCKER_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]
