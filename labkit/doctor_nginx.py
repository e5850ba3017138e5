"""Read Nginx's configuration with crossplane and find every place it hands requests to PHP-FPM.

crossplane (https://github.com/nginxinc/crossplane) lexes and parses each file. Includes are
followed here rather than by crossplane, for three reasons: a copied tree names its files by
their server paths, a file included from a `location` must be checked in that context, and an
include loop (on which Nginx itself recurses until it crashes) must be reported, not followed.
Each statement is then checked with crossplane's own table of where a directive may appear.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

import crossplane  # type: ignore[import-untyped]
from crossplane.analyzer import (  # type: ignore[import-untyped]
    CONTEXTS,
    DIRECTIVES,
    analyze,
    enter_block_ctx,
)
from crossplane.errors import NgxParserBaseException  # type: ignore[import-untyped]

from labkit.doctor_files import Origin, Tree, has_glob
from labkit.errors import DoctorInputError

Context = tuple[str, ...]
# A fragment such as a sites-available file is read as if included where Debian includes it.
_FRAGMENT_CONTEXTS: dict[str, Context] = {
    "server": ("http",),
    "upstream": ("http",),
    "location": ("http", "server"),
}
_COMMENTED_PASS = re.compile(r"^\s*fastcgi_pass\s+([^;\s]+)\s*;")
MAX_INCLUDE_DEPTH = 64


@dataclass(frozen=True)
class Rejection:
    """Text that Nginx or PHP-FPM refuses: at its config test, or when it starts."""

    tool: str
    stage: str
    reason: str
    origin: Origin | None = None

    def __str__(self) -> str:
        when = f"`{self.tool} -t`" if self.stage == "test" else f"{self.tool} start-up"
        where = f"{self.origin}: " if self.origin else ""
        return f"{when} fails: {where}{self.reason}"


@dataclass(frozen=True)
class FastcgiPass:
    """One `fastcgi_pass` and the server and location it sits in."""

    value: str
    origin: Origin
    server: str
    location: str


@dataclass(frozen=True)
class Upstream:
    """An `upstream` block: its name and the `server` addresses in it."""

    name: str
    origin: Origin
    servers: tuple[tuple[str, Origin], ...]


@dataclass(frozen=True)
class NginxSide:
    """What the doctor read from Nginx's configuration."""

    main: str
    user: tuple[str, str | None] | None
    user_origin: Origin | None
    passes: tuple[FastcgiPass, ...]
    upstreams: dict[str, Upstream]
    rejections: tuple[Rejection, ...]
    warnings: tuple[str, ...]
    commented_passes: tuple[tuple[str, Origin], ...]
    fragment: bool


@dataclass
class _Scope:
    server: str = ""
    location: str = ""
    passes: list[Origin] = field(default_factory=list)


@dataclass
class _Found:
    user: tuple[str, str | None] | None = None
    user_origin: Origin | None = None
    passes: list[FastcgiPass] = field(default_factory=list)
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    commented: list[tuple[str, Origin]] = field(default_factory=list)


def read_nginx(tree: Tree, main: str) -> NginxSide:
    """Read Nginx's configuration from its main file, following includes.

    Relative includes resolve against the directory of the main file, which is Nginx's
    configuration prefix when it runs with `-c` that file (Debian: /etc/nginx).

    Args:
        tree: The configuration tree.
        main: The main file's server path, e.g. ``/etc/nginx/nginx.conf``.

    Returns:
        Every `fastcgi_pass`, the worker `user`, the upstreams, and what `nginx -t` refuses.

    Raises:
        DoctorInputError: A file cannot be read, or the main file is not Nginx configuration.
    """
    walker = _Walker(tree, posixpath.dirname(main))
    statements = walker.parse(main)
    context = _main_context(main, statements)
    walker.fragment = context != ()
    walker.walk_file(main, statements, context, (tree.resolve(main),), _Scope())
    found = walker.found
    return NginxSide(
        main,
        found.user,
        found.user_origin,
        tuple(found.passes),
        found.upstreams,
        tuple(found.rejections),
        tuple(found.warnings),
        tuple(found.commented),
        context != (),
    )


def _main_context(main: str, statements: list[dict[str, Any]]) -> Context:
    names = [s["directive"] for s in statements if s["directive"] != "#"]
    # Limitation: a main file that crossplane cannot parse at all (an unbalanced brace) is
    # reported here as "not Nginx configuration" instead of with the parser's own error.
    if not any(name in DIRECTIVES for name in names):
        raise DoctorInputError(
            main, "does not look like Nginx configuration (no Nginx directive in it)"
        )
    if "http" in names or "events" in names:
        return ()
    for name in names:
        if name in _FRAGMENT_CONTEXTS:
            return _FRAGMENT_CONTEXTS[name]
    return ()


class _Walker:
    def __init__(self, tree: Tree, prefix: str) -> None:
        self.tree = tree
        self.prefix = prefix
        self.found = _Found()
        self.fragment = False
        self._parsed: dict[str, tuple[list[dict[str, Any]], list[tuple[str, int | None]]]] = {}

    def parse(self, server_path: str) -> list[dict[str, Any]]:
        """Parse one file with crossplane; syntax errors become rejections."""
        path = self.tree.resolve(server_path)
        if path not in self._parsed:
            local = self.tree.parser_file(server_path)
            payload = crossplane.parse(
                local,
                single=True,
                comments=True,
                check_ctx=False,
                check_args=False,
                onerror=lambda error: getattr(error, "strerror", None) or str(error),
            )
            config = payload["config"][0]
            errors = [(e.get("callback") or e["error"], e.get("line")) for e in payload["errors"]]
            self._parsed[path] = (config["parsed"], errors)
        statements, errors = self._parsed[path]
        for reason, line in errors:
            self._reject(reason, Origin(server_path, line) if line else None)
        return statements

    def walk_file(
        self,
        server_path: str,
        statements: list[dict[str, Any]],
        context: Context,
        stack: tuple[str, ...],
        scope: _Scope,
    ) -> None:
        for statement in statements:
            self._statement(server_path, statement, context, stack, scope)

    def _statement(
        self,
        file: str,
        statement: dict[str, Any],
        context: Context,
        stack: tuple[str, ...],
        scope: _Scope,
    ) -> None:
        name = statement["directive"]
        origin = Origin(file, statement["line"])
        if name == "#":
            self._comment(statement.get("comment", ""), origin)
            return
        self._analyze(file, statement, context, origin)
        args: list[str] = statement.get("args") or []
        if name == "include" and args:
            self._include(args[0], origin, context, stack, scope)
        elif name == "user" and context == () and args:
            self.found.user = (args[0], args[1] if len(args) > 1 else None)
            self.found.user_origin = origin
        elif name == "upstream" and "block" in statement and args:
            self._upstream(args[0], origin, statement["block"])
        elif name == "fastcgi_pass" and args:
            self._pass(args[0], origin, scope)
        if "block" in statement:
            inner = _inner_scope(statement, context, scope)
            child = enter_block_ctx(statement, context)
            self.walk_file(file, statement["block"], child, stack, inner)

    def _analyze(
        self, file: str, statement: dict[str, Any], context: Context, origin: Origin
    ) -> None:
        name = statement["directive"]
        if context in CONTEXTS and name not in DIRECTIVES:
            self.found.warnings.append(
                f"{origin}: unknown directive {name!r}: `nginx -t` refuses it unless a module "
                "the doctor does not know provides it"
            )
            return
        try:
            analyze(file, statement, "{" if "block" in statement else ";", context)
        except NgxParserBaseException as error:
            self._reject(error.strerror, origin)

    def _include(
        self, pattern: str, origin: Origin, context: Context, stack: tuple[str, ...], scope: _Scope
    ) -> None:
        full = posixpath.normpath(posixpath.join(self.prefix, pattern))
        if not self.tree.is_inside(full):
            self.found.warnings.append(
                f"{origin}: include {full} lies outside the tree given; assumed to hold no "
                "`user`, `upstream` or `fastcgi_pass`"
            )
            return
        if has_glob(full):
            files = self.tree.glob(full)
        elif self.tree.exists(full):
            files = [full]
        elif self.fragment:
            self.found.warnings.append(f"{origin}: {full} is not in the tree; assumed harmless")
            return
        else:
            self._reject(f'open() "{full}" failed (2: No such file or directory)', origin)
            return
        for path in files:
            self._include_file(path, origin, context, stack, scope)

    def _include_file(
        self, path: str, origin: Origin, context: Context, stack: tuple[str, ...], scope: _Scope
    ) -> None:
        real = self.tree.resolve(path)
        if len(stack) >= MAX_INCLUDE_DEPTH:
            # Limitation: a chain of includes deeper than this is not followed, loop or not.
            raise DoctorInputError(
                path, f"includes nested more than {MAX_INCLUDE_DEPTH} files deep; read no deeper"
            )
        if real in stack:
            chain = " -> ".join([*stack, real])
            self._reject(
                f"include loop ({chain}): Nginx would include these files forever and crash",
                origin,
            )
            return
        if self.tree.is_dir(path):
            self._reject(f'"{path}" is a directory, not a file to include', origin)
            return
        statements = self.parse(path)
        self.walk_file(path, statements, context, (*stack, real), scope)

    def _upstream(self, name: str, origin: Origin, block: list[dict[str, Any]]) -> None:
        servers = tuple(
            (s["args"][0], Origin(origin.file, s["line"]))
            for s in block
            if s["directive"] == "server" and s.get("args") and "down" not in s["args"][1:]
        )
        self.found.upstreams[name.lower()] = Upstream(name, origin, servers)

    def _pass(self, value: str, origin: Origin, scope: _Scope) -> None:
        if scope.passes:
            self._reject('"fastcgi_pass" directive is duplicate', origin)
            return
        scope.passes.append(origin)
        location = scope.location or "(server level)"
        self.found.passes.append(FastcgiPass(value, origin, scope.server or "(fragment)", location))

    def _comment(self, text: str, origin: Origin) -> None:
        match = _COMMENTED_PASS.match(text)
        if match:
            self.found.commented.append((match.group(1), origin))

    def _reject(self, reason: str, origin: Origin | None) -> None:
        rejection = Rejection("nginx", "test", reason, origin)
        if rejection not in self.found.rejections:
            self.found.rejections.append(rejection)


def _inner_scope(statement: dict[str, Any], context: Context, scope: _Scope) -> _Scope:
    name, args = statement["directive"], statement.get("args") or []
    if name == "server" and context == ("http",):
        return _Scope(server=_describe_server(statement["block"]))
    if name in ("location", "if", "server"):
        # A `server` inside a server is the article's typo for `location`; keep it visible.
        here = f"{name} {' '.join(args)}".strip()
        location = f"{scope.location} > {here}" if scope.location else here
        return _Scope(server=scope.server, location=location)
    return _Scope(server=scope.server, location=scope.location)


def _describe_server(block: list[dict[str, Any]]) -> str:
    names = [" ".join(s.get("args") or []) for s in block if s["directive"] == "server_name"]
    listens = [" ".join(s.get("args") or []) for s in block if s["directive"] == "listen"]
    parts = [f"server_name {names[0]}" if names else "", f"listen {listens[0]}" if listens else ""]
    return "server" + (f" ({', '.join(p for p in parts if p)})" if any(parts) else "")
