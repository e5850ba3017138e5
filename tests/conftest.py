"""Shared fixtures. Engine tests start real labs with unique names and always remove them."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

import pytest

from labkit import Lab

# `make test` sets LABKIT_TEST_RUN so every lab of one run shares a findable prefix.
RUN_ID = os.environ.get("LABKIT_TEST_RUN", str(os.getpid()))[-8:]
_counter = itertools.count()


def unique_lab_name(tag: str) -> str:
    """Return a lab name no other test, worker or run uses at the same time."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw")
    return f"t{RUN_ID}-{worker}-{tag}-{next(_counter)}"


@pytest.fixture
def make_lab() -> Iterator[Callable[..., Lab]]:
    """Start labs on the real engine; every one is removed when the test ends, pass or fail."""
    labs: list[Lab] = []

    def make(topology: str = "pod", tag: str = "lab") -> Lab:
        lab = Lab(unique_lab_name(tag), topology)
        labs.append(lab)
        return lab.up(build=False)

    yield make
    for lab in labs:
        lab.down()


@pytest.fixture
def new_lab_name() -> Callable[[str], str]:
    """Return the function that makes unique lab names, for tests that start labs themselves."""
    return unique_lab_name
