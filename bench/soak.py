"""Soak: many up/apply/request/down cycles across parallel labs, then count failures and leaks.

Run by `make soak` (not part of `make test`). Prints one line per lab worker and a closing
line `N passed, N failed` (cycles), then the number of leaked objects; exits non-zero when a
cycle failed or anything leaked.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from labkit import Cause, Lab, LabkitError
from labkit.backend import LAB_LABEL, Engine

# The two states a cycle switches between, with what each must show.
BROKEN = {"listen.owner": "ubuntu", "listen.group": "ubuntu"}
EXPECTED_BROKEN = (502, Cause.SOCKET_PERMISSION_DENIED)


@dataclass
class WorkerResult:
    name: str
    passed: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_cycle(name: str, topology: str) -> None:
    """Start a lab, break and check it, then remove it; raise on any surprise."""
    with Lab(name, topology) as lab:
        first = lab.request()
        if (first.status, first.cause) != (200, Cause.OK):
            raise AssertionError(
                f"fresh lab answered:\n{first.summary()}\n--- php-fpm log:\n{lab.logs('php', 15)}"
            )
        lab.apply(pool=BROKEN)
        broken = lab.request()
        if (broken.status, broken.cause) != EXPECTED_BROKEN:
            raise AssertionError(f"broken lab answered {broken.status} {broken.cause}")


def run_worker(index: int, cycles: int, prefix: str) -> WorkerResult:
    name = f"{prefix}-{index}"
    result = WorkerResult(name)
    started = time.monotonic()
    for cycle in range(cycles):
        topology = "pod" if (index + cycle) % 2 else "network"
        try:
            run_cycle(name, topology)
            result.passed += 1
        except (LabkitError, AssertionError) as error:
            result.failures.append(f"cycle {cycle} ({topology}): {error}")
    result.seconds = time.monotonic() - started
    return result


def count_leaks(prefix: str) -> int:
    with Engine() as engine:
        return sum(
            1 for labels in engine.list_labels(LAB_LABEL) if labels[LAB_LABEL].startswith(prefix)
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=200, help="cycles in all (default 200)")
    parser.add_argument("--labs", type=int, default=4, help="labs running at once (default 4)")
    args = parser.parse_args()
    prefix = f"soak{os.getpid()}"
    per_lab = max(1, args.cycles // args.labs)

    with ThreadPoolExecutor(max_workers=args.labs) as pool:
        results = list(pool.map(lambda i: run_worker(i, per_lab, prefix), range(args.labs)))

    for result in results:
        print(f"{result.name}: {result.passed} cycles passed in {result.seconds:.0f}s")
        for failure in result.failures:
            print(f"  FAILED {failure}")
    failed = sum(len(r.failures) for r in results)
    leaked = count_leaks(prefix)
    print(f"leaked objects: {leaked}")
    print(f"{sum(r.passed for r in results)} passed, {failed} failed")
    return 1 if failed or leaked else 0


if __name__ == "__main__":
    sys.exit(main())
