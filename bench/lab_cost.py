"""What one lab costs on this machine: memory, disk and start time, measured on real labs.

Run by `make cost`. Starts a few labs one after another, reads the engine's own figures
(`docker stats` memory, each container's writable layer), and prints medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from labkit import Lab
from labkit.backend import LAB_LABEL, Engine
from labkit.images import require_images

MIB = 1024 * 1024


def lab_memory_and_disk(engine: Engine, name: str) -> tuple[float, float]:
    """Return the lab's containers' memory use and writable-layer size, in MiB."""
    memory, written = engine.usage({LAB_LABEL: name})
    return memory / MIB, written / MIB


def image_sizes(engine: Engine) -> float:
    tags = require_images(engine)
    return sum(engine.image_size(tag) for tag in (tags.fpm, tags.nginx)) / MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--labs", type=int, default=5)
    args = parser.parse_args()
    starts, memory, disk = [], [], []
    with Engine() as engine:
        for index in range(args.labs):
            lab = Lab(f"cost{os.getpid()}-{index}", engine=engine)
            started = time.monotonic()
            lab.up(build=False)
            starts.append(time.monotonic() - started)
            try:
                lab.request()
                used, written = lab_memory_and_disk(engine, lab.name)
                memory.append(used)
                disk.append(written)
            finally:
                lab.down()
        shared = image_sizes(engine)
    print(f"labs measured:            {args.labs} (pod topology, after one request)")
    print(f"start time (median):      {statistics.median(starts):.2f} s")
    print(f"memory per lab (median):  {statistics.median(memory):.1f} MiB")
    print(f"disk per lab (median):    {statistics.median(disk):.2f} MiB written in containers")
    print(f"images, shared by labs:   {shared:.0f} MiB")


if __name__ == "__main__":
    main()
