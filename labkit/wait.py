"""One shared polling helper, so every wait in labkit has a monotonic deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_INTERVAL = 0.02


def poll(check: Callable[[], T | None], limit: float, interval: float = POLL_INTERVAL) -> T | None:
    """Call `check` until it returns something other than None, or `limit` seconds pass.

    Args:
        check: Returns a result when the awaited thing has happened, else None.
        limit: Seconds to keep trying.
        interval: Seconds between tries.

    Returns:
        The first result that is not None, or None when the deadline passed.
    """
    deadline = time.monotonic() + limit
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
