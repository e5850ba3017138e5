"""Run after the whole suite (`make test` does): nothing the suite started may remain.

Every lab a test run starts (notebook kernels included) carries the run's label, so only the
run's own objects count on an engine that others share.
"""

from __future__ import annotations

import os

import pytest

from labkit.backend import KIT_LABEL, Engine
from labkit.lab import RUN_ENV, RUN_LABEL

pytestmark = [pytest.mark.engine, pytest.mark.leakcheck]


def test_suite_leaves_no_container_network_or_volume() -> None:
    run = os.environ[RUN_ENV]

    with Engine() as engine:
        labelled = engine.list_labels(KIT_LABEL)
    left = [labels for labels in labelled if labels.get(RUN_LABEL) == run]

    assert left == []
