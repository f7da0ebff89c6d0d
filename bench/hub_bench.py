#!/usr/bin/env python3
"""`gardenbuild bench` on the example hub, cold and cached, beside the usual way.

    python bench/hub_bench.py [--repeat 3]

Copies examples/solubility and examples/solubility-hub into a temporary folder and uses a
fresh catalog (the step cache is the machine's, so builds are as warm as they are here).
Figures:

  cold       `gardenbuild bench HUB`: builds the members (cached steps or not), scores all
  cached     the same again: every score's key is known, nothing is called
  per member the seconds each member's scoring took in the cold run
  usual way  what a script does without hubs: `gardenbuild run` of each member on the 257
             inputs, one after another, and the metrics computed with NumPy
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def gardenbuild(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gardenbuild", "-q", *args], capture_output=True, text=True,
                          env=env, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ignore = shutil.ignore_patterns(".gardenbuild")
        shutil.copytree(REPO / "examples" / "solubility", root / "solubility", ignore=ignore)
        shutil.copytree(REPO / "examples" / "solubility-hub", root / "solubility-hub", ignore=ignore)
        hub = root / "solubility-hub"
        env = {**os.environ, "GARDENBUILD_DATA": str(root / "data"),
               "GARDENBUILD_BASE_IMAGE": os.environ.get("GARDENBUILD_BASE_IMAGE", "localhost/gardenbuild/python:3.11")}
        for member in (root / "solubility", hub / "members" / "esol-linear", hub / "members" / "knn"):
            gardenbuild("build", str(member), env=env)  # builds are build_bench's subject, not this one's
        cold, cached, per_member = [], [], {}
        for _ in range(args.repeat):
            shutil.rmtree(root / "data", ignore_errors=True)
            started = time.perf_counter()
            out = json.loads(gardenbuild("bench", str(hub), "--json", env=env).stdout)
            cold.append(time.perf_counter() - started)
            for s in out["scores"]:
                per_member.setdefault(s["member"], []).append(s["seconds"])
            started = time.perf_counter()
            gardenbuild("bench", str(hub), "--json", env=env)
            cached.append(time.perf_counter() - started)
        with open(hub / "data" / "huuskonen-test.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        (root / "input.json").write_text(json.dumps({"smiles": [r["smiles"] for r in rows]}))
        reference = np.array([float(r["logS"]) for r in rows])
        usual = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            for member in (root / "solubility", hub / "members" / "esol-linear", hub / "members" / "knn"):
                pred = np.array(json.loads(gardenbuild("run", str(member), "predict_solubility", "--input-file",
                                                       str(root / "input.json"), "--cold", env=env).stdout))
                _ = (np.mean(np.abs(pred - reference)), np.sqrt(np.mean((pred - reference) ** 2)))
            usual.append(time.perf_counter() - started)
    median = statistics.median
    print(f"example hub (3 members, 257 inputs), medians of {args.repeat}:")
    print(f"  gardenbuild bench, cold (members built already)   {median(cold):6.2f} s")
    print(f"  gardenbuild bench, cached                        {median(cached):6.2f} s")
    for name, seconds in per_member.items():
        print(f"    {name:<16} scored in {median(seconds):5.2f} s")
    print(f"  usual way: gardenbuild run x3 + NumPy, in series  {median(usual):6.2f} s")


if __name__ == "__main__":
    main()
