"""Configuration trees for the doctor's tests, written in Debian's layout from a few lines of text.

Files are given by the path a server reads them at (``/etc/nginx/...``) and written under a
temporary root, as a copy of a server's /etc would be.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from labkit.doctor import Accounts, Facts, Report, examine

# Debian's base accounts plus the lab images' (docker/common/users.sh).
PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
ubuntu:x:1000:1000::/home/ubuntu:/bin/bash
alice:x:1001:1001::/home/alice:/bin/bash
bob:x:1002:1002::/home/bob:/bin/bash
mallory:x:1003:1003::/home/mallory:/bin/bash
"""
GROUP = """root:x:0:
daemon:x:1:
www-data:x:33:
users:x:100:
nogroup:x:65534:
ubuntu:x:1000:
alice:x:1001:
bob:x:1002:
mallory:x:1003:
"""
NGINX_CONF = """user {user};
worker_processes auto;
pid /run/nginx.pid;
include /etc/nginx/modules-enabled/*.conf;

events {{
    worker_connections 768;
}}

http {{
    include /etc/nginx/mime.types;
    include /etc/nginx/conf.d/*.conf;
    include /etc/nginx/sites-enabled/*;
}}
"""
SITE = """server {{
    listen 80 default_server;
    root /var/www/html;
    index index.php index.html;
    server_name _;

    location / {{
        try_files $uri $uri/ =404;
    }}

    location ~ \\.php$ {{
        include snippets/fastcgi-php.conf;
        fastcgi_pass {fastcgi_pass};
    }}
}}
"""
FASTCGI_PHP = """fastcgi_split_path_info ^(.+?\\.php)(/.*)$;
try_files $fastcgi_script_name =404;
set $path_info $fastcgi_path_info;
fastcgi_param PATH_INFO $path_info;
fastcgi_index index.php;
include fastcgi.conf;
"""
FPM_CONF = """[global]
pid = /run/php/php8.2-fpm.pid
error_log = /var/log/php8.2-fpm.log
include=/etc/php/8.2/fpm/pool.d/*.conf
"""
POOL_BASE = {
    "user": "www-data",
    "group": "www-data",
    "listen": "/run/php/php8.2-fpm.sock",
    "listen.owner": "www-data",
    "listen.group": "www-data",
    "pm": "dynamic",
    "pm.max_children": "5",
    "pm.start_servers": "2",
    "pm.min_spare_servers": "1",
    "pm.max_spare_servers": "3",
}


def accounts(passwd: str = PASSWD, group: str = GROUP) -> Accounts:
    return Accounts.from_text(passwd, group, "test accounts")


def facts(**changes: object) -> Facts:
    """Return facts for one Debian host with the lab's accounts, changed by keyword."""
    return dataclasses.replace(Facts(accounts()), **changes)  # type: ignore[arg-type]


def pool_text(name: str = "www", **directives: str | None) -> str:
    """Return a pool file: Debian's stock `www` directives, changed (None removes one)."""
    values: dict[str, str | None] = {
        **POOL_BASE,
        **{k.replace("__", "."): v for k, v in directives.items()},
    }
    lines = [f"[{name}]"] + [f"{k} = {v}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


def write_files(root: Path, files: Mapping[str, str]) -> None:
    """Write files under `root` by their server paths; a value ``-> TARGET`` makes a symlink."""
    for path, text in files.items():
        local = root / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        if text.startswith("-> "):
            os.symlink(text[3:], local)
        else:
            local.write_text(text)


def debian_files(
    fastcgi_pass: str = "unix:/run/php/php8.2-fpm.sock",
    pools: Mapping[str, str] | None = None,
    user: str = "www-data",
    site: str | None = None,
) -> dict[str, str]:
    """Return Debian's Nginx and PHP-FPM files with one site and the given pool files."""
    files = {
        "/etc/nginx/nginx.conf": NGINX_CONF.format(user=user),
        "/etc/nginx/mime.types": "types {\n    text/html html;\n}\n",
        "/etc/nginx/fastcgi.conf": (
            "fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n"
        ),
        "/etc/nginx/snippets/fastcgi-php.conf": FASTCGI_PHP,
        "/etc/nginx/modules-enabled/.keep": "",
        "/etc/nginx/conf.d/.keep": "",
        "/etc/nginx/sites-available/default": site or SITE.format(fastcgi_pass=fastcgi_pass),
        "/etc/nginx/sites-enabled/default": "-> /etc/nginx/sites-available/default",
        "/etc/php/8.2/fpm/php-fpm.conf": FPM_CONF,
    }
    for name, text in (pools or {"www": pool_text()}).items():
        files[f"/etc/php/8.2/fpm/pool.d/{name}.conf"] = text
    return files


def run_doctor(
    root: Path,
    files: Mapping[str, str],
    the_facts: Facts | None = None,
    fpm: list[str] | None = None,
) -> Report:
    """Write `files` under `root` and examine them as /etc/nginx and /etc/php/8.2/fpm."""
    write_files(root, files)
    masters = [str(root / p.lstrip("/")) for p in (fpm or ["/etc/php/8.2/fpm"])]
    return examine(root / "etc/nginx", masters, the_facts or facts())
