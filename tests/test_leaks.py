"""Run after the whole suite (`make test` does): nothing the suite started may remain.

Objects are matched by the kit's labels and by creation time, so a learner's lab that was
already running when the suite started is not counted.
"""

from __future__ import annotations

import os

import pytest

from labkit.backend import KIT_LABEL, Engine
from labkit.lab import CREATED_LABEL

pytestmark = [pytest.mark.engine, pytest.mark.leakcheck]


def test_suite_leaves_no_container_network_or_volume() -> None:
    started = float(os.environ["LABKIT_TEST_START"])

    with Engine() as engine:
        labelled = engine.list_labels(KIT_LABEL)
    left = [labels for labels in labelled if float(labels.get(CREATED_LABEL, "0")) >= started]

    assert left == []
