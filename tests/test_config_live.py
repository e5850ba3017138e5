"""Arbitrary text in every field: refused with a clear message, or read by PHP-FPM and Nginx
exactly as it was asked. The tools themselves (`php-fpm -tt`, `nginx -T`) are the judges."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit import ConfigError, Lab, LabConfig
from labkit.lab import unique_name

pytestmark = pytest.mark.engine

POOL_FIELDS = [
    "listen",
    "listen.owner",
    "listen.group",
    "listen.mode",
    "listen.allowed_clients",
    "pm.max_children",
    "php_admin_value[error_log]",
]
NGINX_FIELDS = ["fastcgi_pass", "user"]
# Text that looks like the real thing half of the time, and like anything the other half.
VALUES = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[a-z0-9/.:\[\]_ -]{1,30}", fullmatch=True),
    st.sampled_from(["9000", "127.0.0.1:9000", "[::1]:9000", "/run/php/x.sock", "0660", "ubuntu"]),
)
LIVE = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(unique_name("hypothesis")) as live:
        yield live


def fpm_value(printed: str, key: str) -> str | None:
    found = re.search(rf"NOTICE: \t{re.escape(key)} = (.*)$", printed, re.MULTILINE)
    return found.group(1) if found else None


@LIVE
@given(field=st.sampled_from(POOL_FIELDS), value=VALUES)
def test_pool_value_is_refused_or_read_back_unchanged(lab: Lab, field: str, value: str) -> None:
    try:
        config = LabConfig().with_changes({field: value})
    except ConfigError as error:
        assert error.field == field and str(error)
        return

    accepted, printed = lab.understood(config)

    stored = config.pool("www").get(field)
    assert accepted, printed
    assert fpm_value(printed, field) == stored


@LIVE
@given(field=st.sampled_from(NGINX_FIELDS), value=VALUES)
def test_nginx_value_is_refused_or_read_back_unchanged(lab: Lab, field: str, value: str) -> None:
    try:
        config = LabConfig().with_changes(nginx={field: value})
    except ConfigError as error:
        assert error.field.startswith(field) and str(error)
        return

    accepted, printed = lab.understood(config)

    if not accepted:
        # Nginx resolves host names when it reads its files; a name it cannot resolve is
        # refused by the tool itself, with its reason.
        assert "host not found in upstream" in printed
        return
    assert f"    {field} {value};" in printed.replace("\n" + field, "\n    " + field)
