"""Read a configuration tree as a server holds it, wherever its copy lies on this machine.

A tree given as `/tmp/copy/etc/nginx` still names its files `/etc/nginx/...` in every
`include` and symbolic link, so paths are kept in the server's spelling and mapped to the copy
only when a file is read. Everything read here is checked first: a missing or unreadable
path, a special file, a binary or huge file, or too many files stop the doctor with a
`DoctorInputError` instead of a traceback.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import DoctorInputError

# Debian's biggest stock file (mime.types) is 5 kB; a megabyte is a wrong path, not a config.
MAX_FILE_BYTES = 1 << 20
MAX_FILES = 1000
MAX_LINK_HOPS = 40
_GLOB_MAGIC = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Origin:
    """Where a directive was read: the file as the server names it, and the line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def has_glob(pattern: str) -> bool:
    """Tell whether `pattern` holds glob(3) magic characters."""
    return bool(_GLOB_MAGIC.search(pattern))


class Tree:
    """A configuration directory of a server, read from a local copy or from the real place.

    Args:
        local_root: The directory on this machine.
        server_root: What the server calls that directory, e.g. ``/etc/nginx``.
        overlay: Files (server path to text) read instead of the disk; the doctor checks a
            fix by reading the tree again with the changed files laid over it.
        read_outside: Whether paths outside `server_root` may be read from this machine
            (true when the tree is this machine's own).
    """

    def __init__(
        self,
        local_root: Path,
        server_root: str,
        overlay: Mapping[str, str] | None = None,
        read_outside: bool = False,
    ) -> None:
        self.local_root = local_root
        self.server_root = posixpath.normpath(server_root)
        self.overlay = {posixpath.normpath(k): v for k, v in (overlay or {}).items()}
        self.read_outside = read_outside
        self._texts: dict[str, str] = {}
        self._temp: str | None = None

    def with_overlay(self, overlay: Mapping[str, str]) -> Tree:
        """Return the same tree with more files laid over it."""
        return Tree(
            self.local_root, self.server_root, {**self.overlay, **overlay}, self.read_outside
        )

    def close(self) -> None:
        """Remove the temporary copies made for the Nginx parser."""
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_inside(self, server_path: str) -> bool:
        """Tell whether a server path can be read here (inside the tree, or this machine's)."""
        return self.read_outside or self._under_root(posixpath.normpath(server_path))

    def exists(self, server_path: str) -> bool:
        """Tell whether a server path exists here (after its links are followed)."""
        path = self.resolve(server_path)
        if path in self.overlay:
            return True
        local = self._to_local(path)
        return local is not None and local.exists()

    def is_dir(self, server_path: str) -> bool:
        """Tell whether a server path is a directory here."""
        path = self.resolve(server_path)
        if any(key.startswith(path.rstrip("/") + "/") for key in self.overlay):
            return True
        local = self._to_local(path)
        return local is not None and local.is_dir()

    def resolve(self, server_path: str) -> str:
        """Follow symbolic links in the server's own namespace, as the server would.

        Raises:
            DoctorInputError: A chain of links longer than the kernel allows (ELOOP).
        """
        path = posixpath.normpath(server_path)
        for _ in range(MAX_LINK_HOPS):
            target = self._first_link(path)
            if target is None:
                return path
            path = target
        raise DoctorInputError(server_path, "too many levels of symbolic links (a link loop)")

    def read(self, server_path: str) -> str:
        """Return a file's text after checking that it is small, regular configuration text.

        Raises:
            DoctorInputError: Missing, unreadable, special, binary or huge, or one file too many.
        """
        path = self.resolve(server_path)
        if path in self.overlay:
            return self.overlay[path]
        if path not in self._texts:
            if len(self._texts) >= MAX_FILES:
                raise DoctorInputError(
                    server_path, f"more than {MAX_FILES} files included: is an include too wide?"
                )
            self._texts[path] = _read_checked(server_path, self._to_local(path))
        return self._texts[path]

    def parser_file(self, server_path: str) -> str:
        """Return a local file holding `server_path`'s checked text, for a parser that opens files.

        Raises:
            DoctorInputError: As `read`.
        """
        text = self.read(server_path)
        path = self.resolve(server_path)
        local = self._to_local(path)
        if path not in self.overlay and local is not None:
            return str(local)
        if self._temp is None:
            self._temp = tempfile.mkdtemp(prefix="labkit-doctor-")
        copy = Path(self._temp) / path.lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(text)
        return str(copy)

    def glob(self, pattern: str) -> list[str]:
        """Expand a glob(3) pattern in the server's namespace, sorted like glob(3) sorts.

        Hidden names match only a pattern that starts with a dot, as in glob(3).
        """
        parts = [p for p in posixpath.normpath(pattern).split("/") if p]
        found = ["/"]
        for part in parts:
            matched: list[str] = []
            for base in found:
                if not has_glob(part):
                    matched.append(posixpath.join(base, part))
                    continue
                for name in self._list_dir(base):
                    if name.startswith(".") and not part.startswith("."):
                        continue
                    if fnmatch.fnmatchcase(name, part):
                        matched.append(posixpath.join(base, name))
            found = matched
        return sorted(p for p in found if self._lexists(p))

    def _list_dir(self, server_dir: str) -> list[str]:
        path = self.resolve(server_dir)
        names = {
            key[len(path.rstrip("/")) + 1 :].split("/")[0]
            for key in self.overlay
            if key.startswith(path.rstrip("/") + "/")
        }
        local = self._to_local(path)
        if local is not None and local.is_dir():
            try:
                names.update(os.listdir(local))
            except OSError as error:
                raise DoctorInputError(server_dir, f"cannot list: {error.strerror}") from error
        return sorted(names)

    def _lexists(self, server_path: str) -> bool:
        path = posixpath.normpath(server_path)
        if path in self.overlay:
            return True
        try:
            parent = self.resolve(posixpath.dirname(path))
        except DoctorInputError:
            return False
        local = self._to_local(posixpath.join(parent, posixpath.basename(path)))
        return local is not None and os.path.lexists(local)

    def _under_root(self, path: str) -> bool:
        return path == self.server_root or path.startswith(self.server_root.rstrip("/") + "/")

    def _to_local(self, path: str) -> Path | None:
        if self._under_root(path):
            rest = path[len(self.server_root) :].lstrip("/")
            return self.local_root / rest if rest else self.local_root
        return Path(path) if self.read_outside else None

    def _first_link(self, path: str) -> str | None:
        """Return `path` with its first symbolic link replaced by the link's target, or None."""
        parts = [p for p in path.split("/") if p]
        for index in range(1, len(parts) + 1):
            prefix = "/" + "/".join(parts[:index])
            if prefix in self.overlay:
                return None
            local = self._to_local(prefix)
            if local is None or not local.is_symlink():
                continue
            target = os.readlink(local)
            base = (
                target
                if target.startswith("/")
                else posixpath.join(posixpath.dirname(prefix), target)
            )
            return posixpath.normpath("/".join([base, *parts[index:]]))
        return None


def _read_checked(shown: str, local: Path | None) -> str:
    if local is None:
        raise DoctorInputError(shown, "outside the configuration tree given to the doctor")
    try:
        info = local.stat()
        if stat.S_ISDIR(info.st_mode):
            raise DoctorInputError(shown, "a directory where a file was expected")
        if not stat.S_ISREG(info.st_mode):
            raise DoctorInputError(shown, "not a regular file (a device, socket or pipe)")
        if info.st_size > MAX_FILE_BYTES:
            raise DoctorInputError(
                shown,
                f"{info.st_size} bytes, far larger than a configuration file "
                f"(limit {MAX_FILE_BYTES} bytes): is this the right file?",
            )
        data = local.read_bytes()
    except FileNotFoundError as error:
        raise DoctorInputError(shown, "no such file or directory") from error
    except PermissionError as error:
        raise DoctorInputError(
            shown, "permission denied (run as a user who can read it)"
        ) from error
    except OSError as error:
        raise DoctorInputError(shown, f"cannot read: {error.strerror or error}") from error
    if b"\0" in data:
        raise DoctorInputError(shown, "a binary file, not configuration text")
    # Nginx and PHP-FPM read bytes; a stray Latin-1 comment must not stop the doctor.
    return data.decode("utf-8", errors="replace")
