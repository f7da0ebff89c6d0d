"""What confining a pipeline call costs: a fresh container, plain vs confined, side by side.

    python bench/confine_bench.py [--image localhost/gardenbuild/python:3.11] [--repeat 15]

Plain is ``buildah run`` as gardenbuild did before calls were confined (root, the image's
capabilities, the host's PID namespace, no cgroup). Confined is what every pipeline call
(run, tests, serving) does now: nobody, no capabilities, no_new_privs, its own PID
namespace (util-linux unshare), a memory+pids cgroup. Each sample is one whole
``Backend.run`` of ``python3 -c pass`` (container made, run, removed); the two kinds
alternate so a busy moment hits both. Prints medians and ranges; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gardenbuild.backends import Limits  # noqa: E402
from gardenbuild.backends.buildah import Buildah  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="localhost/gardenbuild/python:3.11")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    backend = Buildah()
    samples: dict[str, list[float]] = {"plain": [], "confined": []}
    kinds = {"plain": None, "confined": Limits(seconds=60, memory=2**30)}
    for kind, limits in kinds.items():  # one untimed run each: page cache, binaries
        backend.run(args.image, ["python3", "-c", "pass"], limits=limits)
    for _ in range(args.repeat):
        for kind, limits in kinds.items():
            started = time.perf_counter()
            result = backend.run(args.image, ["python3", "-c", "pass"], limits=limits)
            samples[kind].append(time.perf_counter() - started)
            assert result.ok, result.stderr
    plain, confined = (statistics.median(samples[k]) for k in ("plain", "confined"))
    print(f"one call of `python3 -c pass` in a fresh container of {args.image}, {args.repeat} samples each:")
    for kind in ("plain", "confined"):
        s = samples[kind]
        print(f"  {kind:<9} median {statistics.median(s) * 1000:6.0f} ms  (min {min(s) * 1000:.0f}, max {max(s) * 1000:.0f})")
    print(f"  confinement costs {(confined - plain) * 1000:+.0f} ms per call ({confined / plain:.2f}x)")


if __name__ == "__main__":
    main()
