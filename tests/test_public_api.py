"""The public surface: what `labkit/__init__.py` re-exports, pinned."""

from __future__ import annotations

import importlib

import pytest

import labkit

PUBLIC_API = [
    "ApplyFailed",
    "ApplyResult",
    "BackendError",
    "Cause",
    "ConfigError",
    "ConfigRejected",
    "ImagesMissing",
    "Lab",
    "LabConfig",
    "LabInUse",
    "LabInfo",
    "LabNotFound",
    "LabTimeout",
    "LabkitError",
    "NginxConfig",
    "Outcome",
    "PoolConfig",
    "ProbeError",
    "SocketFile",
    "TcpAddress",
    "UnixSocket",
    "list_labs",
    "remove_all_labs",
    "unique_name",
]


def test_public_api_is_the_pinned_list() -> None:
    assert labkit.__all__ == PUBLIC_API


def test_public_api_pin_is_sorted() -> None:
    assert sorted(PUBLIC_API) == PUBLIC_API


@pytest.mark.parametrize("name", PUBLIC_API)
def test_public_name_is_importable_from_the_package(name: str) -> None:
    package = importlib.import_module("labkit")

    value = getattr(package, name)

    assert value.__module__.startswith("labkit.")
