"""Rendering models into PHP-FPM and Nginx files."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from labkit import ConfigError, LabConfig, NginxConfig, PoolConfig
from labkit.config import DEFAULT_SOCKET, check_pool_directive, default_pool
from labkit.render import (
    FPM_CANDIDATE,
    FPM_MAIN,
    NGINX_CANDIDATE,
    NGINX_MAIN,
    NGINX_SITE,
    NGINX_SITE_CANDIDATE,
    POOL_CANDIDATE_DIR,
    POOL_DIR,
    diff_files,
    render_lab,
    render_nginx_main,
    render_pool,
    render_site,
    render_worker_logging,
)

CHANGED = LabConfig().with_changes(
    pool={"listen": "127.0.0.1:9000", "listen.mode": "0666", "listen.owner": None},
    nginx={"fastcgi_pass": "127.0.0.1:9000", "user": "nobody nogroup"},
)


def all_rendered_texts(config: LabConfig) -> dict[str, str]:
    """Return every text a lab renders, from the public render functions and render_lab."""
    texts = {
        "pool": render_pool(config.pools[0]),
        "worker-logging": render_worker_logging(config.pools),
        "site": render_site(config.nginx),
        "nginx-main": render_nginx_main(config.nginx, NGINX_SITE, "0123456789ab"),
    }
    texts.update(render_lab(config).all_files())
    return texts


def nginx_statements(text: str) -> list[str]:
    """Return the lines of an Nginx file that are neither comments, blank nor braces."""
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#") and line != "}"]


# Shape of every file


def test_render_is_deterministic_for_equal_configs() -> None:
    rebuilt = LabConfig(
        (PoolConfig("www", CHANGED.pool("www").directives),),
        NginxConfig(fastcgi_pass="127.0.0.1:9000", user="nobody nogroup"),
    )

    assert all_rendered_texts(rebuilt) == all_rendered_texts(CHANGED)
    assert render_lab(rebuilt) == render_lab(CHANGED)


def test_render_starts_with_a_banner_naming_labkit() -> None:
    for path, text in all_rendered_texts(CHANGED).items():
        first_line = text.splitlines()[0]
        assert first_line.startswith(("; ", "# ")), path
        assert "written by labkit" in first_line.lower(), path


def test_render_ends_with_exactly_one_newline() -> None:
    for path, text in all_rendered_texts(CHANGED).items():
        assert text.endswith("\n"), path
        assert not text.endswith("\n\n"), path


def test_render_pool_puts_one_directive_per_line_in_model_order() -> None:
    pool = CHANGED.pool("www")

    lines = render_pool(pool).splitlines()

    assert lines[1] == "[www]"
    assert [tuple(line.split(" = ")) for line in lines[2:]] == list(pool.directives)


def test_render_nginx_puts_one_directive_per_line() -> None:
    rendered = render_lab(CHANGED)

    for path, text in rendered.nginx.items():
        for statement in nginx_statements(text):
            assert statement.endswith((";", "{")), (path, statement)
            assert statement.count(";") + statement.count("{") == 1, (path, statement)


def test_render_site_passes_php_to_the_configured_upstream() -> None:
    statements = nginx_statements(render_site(CHANGED.nginx))

    assert "fastcgi_pass 127.0.0.1:9000;" in statements
    assert "fastcgi_read_timeout 60s;" in statements


def test_render_nginx_main_runs_workers_as_the_configured_user() -> None:
    text = render_nginx_main(CHANGED.nginx, NGINX_SITE, "0123456789ab")

    assert "user nobody nogroup;" in nginx_statements(text)
    assert f"include {NGINX_SITE};" in nginx_statements(text)


# Real and candidate files


def test_render_lab_writes_real_files_at_debian_paths() -> None:
    rendered = render_lab(LabConfig())

    assert set(rendered.fpm) == {
        FPM_MAIN,
        f"{POOL_DIR}/www.conf",
    }
    assert set(rendered.nginx) == {NGINX_MAIN, NGINX_SITE}
    assert f"include = {POOL_DIR}/*.conf" in rendered.fpm[FPM_MAIN].splitlines()


def test_render_lab_candidate_paths_differ_from_real_ones() -> None:
    real = render_lab(CHANGED)
    candidate = render_lab(CHANGED, candidate=True)

    assert set(candidate.all_files()).isdisjoint(real.all_files())
    assert set(candidate.fpm) == {
        FPM_CANDIDATE,
        f"{POOL_CANDIDATE_DIR}/www.conf",
    }
    assert set(candidate.nginx) == {NGINX_CANDIDATE, NGINX_SITE_CANDIDATE}


def test_render_lab_candidate_main_files_include_candidate_files() -> None:
    candidate = render_lab(CHANGED, candidate=True)

    assert f"include = {POOL_CANDIDATE_DIR}/*.conf" in candidate.fpm[FPM_CANDIDATE].splitlines()
    assert f"include {NGINX_SITE_CANDIDATE};" in nginx_statements(candidate.nginx[NGINX_CANDIDATE])
    assert candidate.config_id == render_lab(CHANGED).config_id


def test_render_lab_writes_one_file_per_pool() -> None:
    config = LabConfig((default_pool(), PoolConfig("api", (("listen", "9001"),))))

    rendered = render_lab(config)

    assert rendered.fpm[f"{POOL_DIR}/api.conf"].splitlines()[1:] == ["[api]", "listen = 9001"]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("zz-labkit-logging", id="labkit-like-name"),
        pytest.param("zzz", id="sorts-last"),
    ],
)
def test_render_lab_keeps_each_pool_file_whatever_its_name(name: str) -> None:
    config = LabConfig((default_pool(), PoolConfig(name, (("listen", "9001"),))))

    rendered = render_lab(config)

    assert rendered.fpm[f"{POOL_DIR}/{name}.conf"] == render_pool(config.pool(name))
    assert len(rendered.fpm) == 3


def test_render_worker_logging_turns_on_worker_output_for_every_pool() -> None:
    pools = (default_pool(), PoolConfig("api", (("listen", "9001"),)))

    lines = render_worker_logging(pools).splitlines()[1:]

    assert lines == [
        "[www]",
        "catch_workers_output = yes",
        "decorate_workers_output = no",
        "[api]",
        "catch_workers_output = yes",
        "decorate_workers_output = no",
    ]


# config_id


def test_config_id_changes_when_nginx_user_changes() -> None:
    before = render_lab(LabConfig())
    after = render_lab(LabConfig().with_changes(nginx={"user": "nobody"}))

    assert after.config_id != before.config_id


def test_config_id_changes_when_fastcgi_pass_changes() -> None:
    before = render_lab(LabConfig())
    after = render_lab(LabConfig().with_changes(nginx={"fastcgi_pass": "127.0.0.1:9000"}))

    assert after.config_id != before.config_id


def test_config_id_changes_when_read_timeout_changes() -> None:
    before = render_lab(LabConfig())
    after = render_lab(LabConfig().with_changes(nginx={"fastcgi_read_timeout": "5"}))

    assert after.config_id != before.config_id


def test_config_id_stays_when_only_a_pool_changes() -> None:
    before = render_lab(LabConfig())
    after = render_lab(LabConfig().with_changes(pool={"listen.mode": "0666"}))

    assert after.config_id == before.config_id
    assert after.fpm != before.fpm


def test_config_id_is_sent_by_the_rendered_nginx() -> None:
    rendered = render_lab(CHANGED)

    main = nginx_statements(rendered.nginx[NGINX_MAIN])

    assert f"add_header X-Labkit-Config {rendered.config_id} always;" in main


# diff_files


def test_diff_files_shows_changed_lines_under_their_path() -> None:
    old = render_lab(LabConfig()).all_files()
    new = render_lab(LabConfig().with_changes(pool={"listen.owner": "alice"})).all_files()

    lines = diff_files(old, new).splitlines()

    assert [line for line in lines if line.startswith(("+", "-"))] == [
        f"--- {POOL_DIR}/www.conf",
        f"+++ {POOL_DIR}/www.conf",
        "-listen.owner = www-data",
        "+listen.owner = alice",
    ]


def test_diff_files_shows_added_file() -> None:
    old = render_lab(LabConfig()).all_files()
    new = render_lab(LabConfig((default_pool(), PoolConfig("api", (("listen", "9001"),)))))

    lines = diff_files(old, new.all_files()).splitlines()

    assert f"+++ {POOL_DIR}/api.conf" in lines
    assert "+[api]" in lines
    assert "+listen = 9001" in lines


def test_diff_files_is_empty_when_nothing_changed() -> None:
    files = render_lab(CHANGED).all_files()

    assert diff_files(files, dict(files)) == ""


# No value can add a line: hypothesis tries arbitrary text in every kind of directive.

# Directives whose checks keep the value exactly as given.
FREE_FORM_KEYS = (
    "php_admin_value[memory_limit]",
    "env[PATH]",
    "request_terminate_timeout",
    "slowlog",
    "pm.status_path",
)
# Directives with their own checks; some store a canonical spelling (`660` becomes `0660`).
CHECKED_KEYS = (
    "listen.owner",
    "listen.group",
    "listen.mode",
    "listen.allowed_clients",
    "listen.acl_users",
    "listen.acl_groups",
    "listen.backlog",
    "user",
    "group",
    "pm",
    "pm.max_children",
    "pm.max_requests",
)
LISTEN_ONLY = PoolConfig("www", (("listen", DEFAULT_SOCKET),))
# Pieces of valid values mixed with the characters that would end a line, a value or a directive,
# so generated text often comes close to passing.
FRAGMENTS = (
    "/run/php/",
    "php.sock",
    "unix:",
    "..",
    "127.0.0.1",
    "::1",
    "[",
    "]:",
    "9000",
    "%",
    ",",
    " ",
    "www-data",
    "nogroup",
    "0660",
    "-1",
    "5",
    "dynamic",
    "=",
    "[www]",
    "{",
    "}",
    "#",
    "\n",
    "\r",
    ";",
    "'",
    '"',
    "\\",
    "\x00",
    "\u2028",
)
NGINX_WORD = re.compile(r"[^\s;{}#'\"\\$]+")
VALUES = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join),
)


def single_line_ascii(line: str) -> bool:
    """Tell whether `line` is printable ASCII, so no reader can split it into two."""
    return line.isascii() and line.isprintable()


def is_inert_ini_value(value: str) -> bool:
    """Tell whether `value` holds none of the characters that end or quote a PHP-FPM value."""
    return not any(character in value for character in ";\"'\\")


def is_nginx_word(value: str) -> bool:
    """Tell whether `value` is one Nginx token: no space, `;`, brace, comment, quote or variable."""
    return NGINX_WORD.fullmatch(value) is not None


@settings(deadline=None)
@given(key=st.sampled_from(FREE_FORM_KEYS + CHECKED_KEYS), value=VALUES)
@example(key="listen.allowed_clients", value="::1%\nlisten = 0.0.0.0:9000")
@example(key="listen.allowed_clients", value="::1%x")
@example(key="pm.max_children", value="\u00b2")
@example(key="env[PATH]", value="/usr/bin\n[evil]")
def test_pool_value_adds_exactly_its_own_line_or_is_refused(key: str, value: str) -> None:
    try:
        pool = LISTEN_ONLY.with_changes({key: value})
    except ConfigError:
        return
    before = render_pool(LISTEN_ONLY).split("\n")
    after = render_pool(pool).split("\n")

    stored = pool.get(key)

    assert len(after) == len(before) + 1
    assert [line for line in after if line not in before] == [f"{key} = {stored}"]
    assert all(single_line_ascii(line) for line in after if line)
    assert is_inert_ini_value(stored)
    if key in FREE_FORM_KEYS:
        assert stored == value
    else:
        assert check_pool_directive("www", key, stored) == (key, stored)


@settings(deadline=None)
@given(value=VALUES)
@example(value="[::1%\nuser = root]:9000")
@example(value="\u0669\u0660\u0660\u0660")
@example(value="\u00b2")
def test_pool_listen_replaces_exactly_its_own_line_or_is_refused(value: str) -> None:
    try:
        pool = LISTEN_ONLY.with_changes({"listen": value})
    except ConfigError:
        return
    before = render_pool(LISTEN_ONLY).split("\n")
    after = render_pool(pool).split("\n")

    stored = pool.get("listen")

    assert len(after) == len(before)
    assert [line for line in after if line not in before] in ([], [f"listen = {stored}"])
    assert all(single_line_ascii(line) for line in after if line)
    assert is_inert_ini_value(stored)
    assert check_pool_directive("www", "listen", stored) == ("listen", stored)


@settings(deadline=None)
@given(value=VALUES)
@example(value="[::1%;}server{listen 81;}#]:9000")
@example(value="php:9000;include /etc/passwd")
def test_fastcgi_pass_changes_exactly_its_own_line_or_is_refused(value: str) -> None:
    try:
        nginx = NginxConfig(fastcgi_pass=value)
    except ConfigError:
        return
    before = render_site(NginxConfig()).split("\n")
    after = render_site(nginx).split("\n")

    assert len(after) == len(before)
    changed = [new.strip() for old, new in zip(before, after, strict=True) if old != new]
    assert changed in ([], [f"fastcgi_pass {value};"])
    assert all(single_line_ascii(line) for line in after if line)
    assert is_nginx_word(value)


@settings(deadline=None)
@given(value=VALUES)
@example(value="www-data;\ninclude /etc/passwd")
def test_nginx_user_changes_exactly_its_own_line_or_is_refused(value: str) -> None:
    try:
        nginx = NginxConfig(user=value)
    except ConfigError:
        return
    before = render_nginx_main(NginxConfig(), NGINX_SITE, "id").split("\n")
    after = render_nginx_main(nginx, NGINX_SITE, "id").split("\n")

    assert len(after) == len(before)
    changed = [new.strip() for old, new in zip(before, after, strict=True) if old != new]
    assert changed in ([], [f"user {value};"])
    assert all(single_line_ascii(line) for line in after if line)
    assert all(is_nginx_word(word) for word in value.split(" "))
