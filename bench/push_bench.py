"""Push time of a built garden to a real OCI registry on loopback: first push, then again.

    python bench/push_bench.py [--garden examples/solubility]

Starts `docker-registry` (Debian's distribution registry) on a free 127.0.0.1 port with a
fresh storage folder, runs `gardenbuild publish DIR --registry 127.0.0.1:PORT/gardens
--no-tls-verify` twice with a fresh catalog, and prints both wall times and the image
size. The garden must have been built (`gardenbuild build DIR`).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"the registry did not start on port {port}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--garden", default=str(REPO / "examples" / "solubility"))
    args = ap.parse_args()
    build = json.loads((Path(args.garden) / ".gardenbuild" / "build.json").read_text())
    size = subprocess.run(["buildah", "inspect", "--type", "image", "--format", "{{.Manifest}}", build["image"]],
                          capture_output=True, text=True, check=True).stdout
    layers = sum(layer["size"] for layer in json.loads(size)["layers"])
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = Path(tmp) / "config.yml"
        config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp}/data\n"
                          f"http:\n  addr: 127.0.0.1:{port}\n")
        registry = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        try:
            wait_for(port)
            env = {**os.environ, "GARDENBUILD_DATA": str(Path(tmp) / "catalog")}
            cmd = [sys.executable, "-m", "gardenbuild", "-q", "publish", args.garden, "--registry",
                   f"127.0.0.1:{port}/gardens", "--no-tls-verify", "--json"]
            times = []
            for _ in range(2):
                started = time.perf_counter()
                out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
                times.append(time.perf_counter() - started)
                if out.returncode != 0:
                    raise SystemExit(out.stderr)
            ref = json.loads(out.stdout).get("image_ref")
        finally:
            registry.terminate()
            registry.wait()
    print(f"image {build['image']} ({layers / 1e6:.0f} MB uncompressed) -> {ref}")
    print(f"first push  {times[0]:.2f} s")
    print(f"second push {times[1]:.2f} s  (nothing uploaded: every blob already there)")


if __name__ == "__main__":
    main()
