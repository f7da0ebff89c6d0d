#!/usr/bin/env python3
"""How long a model page takes to generate, beside the least the same work costs.

    python bench/page_bench.py [--repeat N] [--garden DIR]

The garden must have been built (`gardenbuild build DIR`). Figures, medians of --repeat:
`gardenbuild page DIR` as a whole command, `gardenbuild.page.write` in the process (resolve
the folder, read its card and build outputs, render, write six files), and, as the floor,
rendering a template of the same size with Jinja2 and writing it once (no garden read).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--garden", default=str(REPO / "examples" / "solubility"))
    args = ap.parse_args()
    import jinja2

    from gardenbuild.consumer.resolve import Resolver
    from gardenbuild.page import write

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        command = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "gardenbuild", "-q", "page", args.garden, "-o", str(out / "cmd")],
                           check=True, capture_output=True)
            command.append(time.perf_counter() - started)
        inside = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            write(Resolver().resolve(args.garden), out / "lib")
            inside.append(time.perf_counter() - started)
        html = (out / "lib" / "index.html").read_text()
        floor = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            (out / "floor.html").write_text(jinja2.Environment(autoescape=True).from_string("{{ t }}").render(t=html))
            floor.append(time.perf_counter() - started)
    median = statistics.median
    print(f"page of {args.garden} ({len(html) / 1e3:.0f} kB of HTML), medians of {args.repeat}:")
    print(f"  gardenbuild page (whole command)          {median(command):.3f} s")
    print(f"  gardenbuild.page.write (in the process)   {median(inside):.3f} s")
    print(f"  floor: render one template, write it      {median(floor):.4f} s")


if __name__ == "__main__":
    main()
