"""Resolution and fetch time for the flagship example: cold (empty uv cache, empty store) and warm.

    python bench/resolve_bench.py [--garden examples/solubility] [--repeat 3]

Cold means uv's own cache and gardenbuild's store are new and empty, so every index page
and wheel comes over the network; warm repeats the same call against the filled store
(gardenbuild's resolution cache and wheel cache answer without any network).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gardenbuild.backends.deps import Target, WheelStore, resolve  # noqa: E402
from gardenbuild.manifest.load import load  # noqa: E402
from gardenbuild.plan.graph import PLATFORM  # noqa: E402
from gardenbuild.report import NullReporter  # noqa: E402


def once(garden, root: Path) -> tuple[float, float, int]:
    started = time.perf_counter()
    wheels = resolve(garden.requirements, Target(garden.python, PLATFORM), indexes=garden.indexes,
                     reporter=NullReporter(), cache_root=root)
    resolved = time.perf_counter()
    WheelStore(root).fetch(wheels, NullReporter())
    return resolved - started, time.perf_counter() - resolved, sum(w.size or 0 for w in wheels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--garden", default=str(Path(__file__).resolve().parents[1] / "examples" / "solubility"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    garden = load(Path(args.garden))
    print(f"garden {garden.name}: {len(garden.requirements)} requirements, Python {garden.python}, {PLATFORM}")
    colds, warms = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as uv_cache, tempfile.TemporaryDirectory() as store:
            os.environ["UV_CACHE_DIR"] = uv_cache
            r, f, size = once(garden, Path(store))
            colds.append((r, f))
            warms.append(once(garden, Path(store))[:2])
    for label, runs in (("cold", colds), ("warm", warms)):
        r = statistics.median(x for x, _ in runs)
        f = statistics.median(y for _, y in runs)
        print(f"{label}: resolve {r:.2f} s + fetch {f:.2f} s = {r + f:.2f} s  (median of {len(runs)}; {size / 1e6:.1f} MB of wheels)")


if __name__ == "__main__":
    main()
