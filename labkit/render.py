"""Turn validated models into the files Debian's PHP-FPM and Nginx read.

Pure and deterministic: same model, same text, so a diff shows exactly what an apply changed.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from labkit.config import PHP_VERSION, LabConfig, NginxConfig, PoolConfig, SiteConfig

FPM_DIR = f"/etc/php/{PHP_VERSION}/fpm"
FPM_MAIN = f"{FPM_DIR}/php-fpm.conf"
POOL_DIR = f"{FPM_DIR}/pool.d"
NGINX_MAIN = "/etc/nginx/nginx.conf"
NGINX_SITE = "/etc/nginx/sites-available/default"
# Candidates sit beside the real files so relative includes (snippets/...) resolve the same.
FPM_CANDIDATE = f"{FPM_DIR}/labkit-candidate.conf"
POOL_CANDIDATE_DIR = f"{FPM_DIR}/labkit-candidate.d"
NGINX_CANDIDATE = "/etc/nginx/labkit-candidate.conf"
NGINX_SITE_CANDIDATE = "/etc/nginx/labkit-candidate-site"
CONFIG_HEADER = "X-Labkit-Config"
# The dot keeps this name apart from every pool's `<name>.conf`: pool names have no dots.

_BANNER = "Written by labkit"


@dataclass(frozen=True)
class RenderedLab:
    """The files of one lab configuration, by container role and absolute path."""

    fpm: dict[str, str]
    nginx: dict[str, str]
    config_id: str

    def all_files(self) -> dict[str, str]:
        return {**self.fpm, **self.nginx}


def render_pool(pool: PoolConfig) -> str:
    """Render one pool file: a banner, the section header, one line per directive."""
    lines = [f"; {_BANNER}: pool {pool.name!r}.", f"[{pool.name}]"]
    lines += [f"{key} = {value}" for key, value in pool.directives]
    return "\n".join(lines) + "\n"


def render_worker_logging(pools: tuple[PoolConfig, ...]) -> str:
    """Render the sections that send workers' log lines to the container log.

    A worker writes "Connection disallowed" (listen.allowed_clients) to its own stderr, which
    PHP-FPM throws away unless `catch_workers_output` is on; the lab reads that line to name
    the cause. Placed in php-fpm.conf after the `include`, these sections reopen each pool
    (as the official php images' docker.conf does) and are read after every pool file.
    """
    lines = [f"; {_BANNER}: workers' log lines go to the container log, where the lab reads them."]
    for pool in pools:
        lines += [f"[{pool.name}]", "catch_workers_output = yes", "decorate_workers_output = no"]
    return "\n".join(lines) + "\n"


def render_fpm_main(pool_dir: str = POOL_DIR, pools: tuple[PoolConfig, ...] = ()) -> str:
    """Render php-fpm.conf: a foreground master logging to the container's stderr."""
    main = (
        f"; {_BANNER}.\n"
        "[global]\n"
        f"pid = /run/php{PHP_VERSION}-fpm.pid\n"
        "error_log = /proc/self/fd/2\n"
        "log_level = notice\n"
        "daemonize = no\n"
        f"include = {pool_dir}/*.conf\n"
    )
    return main + ("\n" + render_worker_logging(pools) if pools else "")


def render_site(nginx: NginxConfig, site: SiteConfig | None = None) -> str:
    """Render sites-available/default as Debian ships it with PHP enabled, or a further site.

    A further site answers its own `server_name` and passes PHP to its own `fastcgi_pass`;
    the default site answers every other name.
    """
    listen = "listen 80;" if site else "listen 80 default_server;"
    fastcgi_pass = site.fastcgi_pass if site else nginx.fastcgi_pass
    return (
        f"# {_BANNER}.\n"
        "server {\n"
        f"    {listen}\n"
        "    root /var/www/html;\n"
        "    index index.php index.html;\n"
        f"    server_name {site.server_name if site else '_'};\n"
        "\n"
        "    location / {\n"
        "        try_files $uri $uri/ =404;\n"
        "    }\n"
        "\n"
        "    location ~ \\.php$ {\n"
        "        include snippets/fastcgi-php.conf;\n"
        f"        fastcgi_pass {fastcgi_pass};\n"
        f"        fastcgi_read_timeout {nginx.fastcgi_read_timeout}s;\n"
        "    }\n"
        "}\n"
    )


def render_nginx_main(nginx: NginxConfig, sites: str | Sequence[str], config_id: str) -> str:
    """Render nginx.conf: Debian's layout trimmed to what the lab uses.

    The `X-Labkit-Config` header lets the lab tell whether a reloaded Nginx already answers
    with the new configuration, since a reload returns before the new workers take over.
    """
    return (
        f"# {_BANNER}.\n"
        f"user {nginx.user};\n"
        "# One worker keeps a room of labs light; Debian ships `auto`.\n"
        "worker_processes 1;\n"
        "pid /run/nginx.pid;\n"
        "error_log /var/log/nginx/error.log;\n"
        "include /etc/nginx/modules-enabled/*.conf;\n"
        "\n"
        "events {\n"
        "    worker_connections 768;\n"
        "}\n"
        "\n"
        "http {\n"
        "    sendfile on;\n"
        "    include /etc/nginx/mime.types;\n"
        "    default_type application/octet-stream;\n"
        "    access_log /var/log/nginx/access.log;\n"
        f"    add_header {CONFIG_HEADER} {config_id} always;\n"
        + "".join(
            f"    include {path};\n" for path in ([sites] if isinstance(sites, str) else sites)
        )
        + "}\n"
    )


def render_lab(config: LabConfig, candidate: bool = False) -> RenderedLab:
    """Render every file of a lab, at the real paths or at the candidate paths used for tests."""
    pool_dir = POOL_CANDIDATE_DIR if candidate else POOL_DIR
    fpm = {FPM_CANDIDATE if candidate else FPM_MAIN: render_fpm_main(pool_dir, config.pools)}
    fpm.update({f"{pool_dir}/{p.name}.conf": render_pool(p) for p in config.pools})
    sites = {site_path(None, candidate): render_site(config.nginx)}
    sites.update(
        {site_path(s.server_name, candidate): render_site(config.nginx, s) for s in config.sites}
    )
    identity = "".join(sites.values()) + repr(config.nginx)
    config_id = hashlib.sha256(identity.encode()).hexdigest()[:12]
    main = render_nginx_main(config.nginx, list(sites), config_id)
    return RenderedLab(
        fpm, {NGINX_CANDIDATE if candidate else NGINX_MAIN: main, **sites}, config_id
    )


def site_path(server_name: str | None, candidate: bool = False) -> str:
    """Return where a site's file lives: `default` for the default site, else its name."""
    if candidate:
        return NGINX_SITE_CANDIDATE + (f"-{server_name}" if server_name else "")
    return f"/etc/nginx/sites-available/{server_name}" if server_name else NGINX_SITE


def diff_files(old: dict[str, str], new: dict[str, str]) -> str:
    """Return a unified diff of two sets of files, empty when nothing changed."""
    chunks: list[str] = []
    for path in sorted(set(old) | set(new)):
        before = old.get(path, "").splitlines(keepends=True)
        after = new.get(path, "").splitlines(keepends=True)
        chunks.extend(difflib.unified_diff(before, after, path, path, lineterm="\n"))
    return "".join(chunks)
