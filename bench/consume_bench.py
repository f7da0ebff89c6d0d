#!/usr/bin/env python3
"""A consumer's costs: find, fetch and call a published garden, beside the usual way.

    python bench/consume_bench.py [--repeat N] [--json]

The example is built (if it is not) and published to a `docker-registry` on loopback.
Then, in a fresh containers-storage (so "cold" really downloads every layer) and a fresh
catalog, side by side:

* **describe**: `gardenbuild info REF` (the garden card from the registry, no pull) against
  `skopeo inspect docker://REF` (the usual way to read an image's labels);
* **pull**: `gardenbuild pull REF` against `buildah pull docker://REF`, cold and again;
* **load**: `gardenbuild.load(REF)` of the pulled garden in a new Python process (import
  included), against `buildah inspect` of the image (what any script must run to learn
  anything about a local image);
* **call**: `g.predict_solubility(...)` from Python, in a fresh container and through a
  running `gardenbuild serve`, against `buildah run IMAGE python -c "load the session, call"`
  (the usual way: a container per call) and a plain HTTP POST to the same server.

Medians of --repeat runs. Everything made is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_bench as bb  # noqa: E402  (shared helpers: sh, say, Failed, machine)
from push_bench import free_port, wait_for  # noqa: E402

from gardenbuild.backends.buildah import Buildah  # noqa: E402

REPO = bb.REPO
EXAMPLE = REPO / "examples" / "solubility"
PIPELINE, INPUT = "predict_solubility", {"smiles": ["CCO"]}


def timed(argv: list[str], env: dict[str, str], *, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=REPO)
    seconds = time.perf_counter() - started
    if check and done.returncode != 0:
        raise bb.Failed(f"{' '.join(argv[:4])} ... failed:\n{done.stderr[-2000:]}")
    return seconds, done


def storage(root: Path) -> Path:
    """An empty containers-storage of its own (same driver as the machine's); its storage.conf."""
    info = json.loads(subprocess.run(["buildah", "info"], capture_output=True, check=True).stdout)
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "{info["store"]["GraphDriverName"]}"\n'
                    f'graphroot = "{root}/graph"\nrunroot = "{root}/run"\n')
    return conf


def wipe(env: dict[str, str]) -> None:
    for argv in (["buildah", "rm", "--all"], ["buildah", "rmi", "--all", "--force"]):
        subprocess.run(argv, capture_output=True, env=env)


LOAD = ("import json, sys, time; t = time.perf_counter(); import gardenbuild; "
        "g = gardenbuild.load(sys.argv[1], tls_verify=False); "
        "print(json.dumps({'s': time.perf_counter() - t, 'pipelines': list(g.pipelines)}))")
CALL = ("import json, sys, time; import gardenbuild; g = gardenbuild.load(sys.argv[1], tls_verify=False); "
        "t = time.perf_counter(); r = g.predict_solubility(**json.loads(sys.argv[2])); "
        "print(json.dumps({'s': time.perf_counter() - t, 'result': r}))")
USUAL_CALL = ("import json, time, dill; t = time.perf_counter(); dill.load_module('/garden/session.pkl'); "
              "import __main__; r = __main__.predict_solubility(**json.loads({inp!r})); print(json.dumps(r))")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    figures: dict[str, tuple[float | None, float | None]] = {}
    median = statistics.median
    with tempfile.TemporaryDirectory(prefix="consume-bench-") as tmp:
        work = Path(tmp)
        garden = work / "solubility"
        shutil.copytree(EXAMPLE, garden, ignore=shutil.ignore_patterns(".gardenbuild", ".ipynb_checkpoints"))
        gardenfile = garden / "Gardenfile.toml"  # a name of its own: its images never stand in for the example's
        gardenfile.write_text(gardenfile.read_text().replace('name = "solubility"', 'name = "consume-bench"', 1))
        base_env = {**os.environ, "GARDENBUILD_DATA": str(work / "publisher"), "GARDENBUILD_NO_USAGE": "1"}
        bb.say("building and publishing the example to a docker-registry on loopback")
        timed([sys.executable, "-m", "gardenbuild", "-q", "build", str(garden)], base_env)
        conf = storage(work / "storage")
        port = free_port()
        (work / "registry.yml").write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {work}/registry\n"
                                           f"http:\n  addr: 127.0.0.1:{port}\n")
        registry = subprocess.Popen(["docker-registry", "serve", str(work / "registry.yml")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = {**base_env, "GARDENBUILD_DATA": str(work / "consumer"), "CONTAINERS_STORAGE_CONF": str(conf),
               "GARDENBUILD_RUN_DIR": str(work / "run")}
        server = None
        try:
            wait_for(port)
            _, done = timed([sys.executable, "-m", "gardenbuild", "-q", "publish", str(garden), "--registry",
                             f"127.0.0.1:{port}/gardens", "--no-tls-verify", "--json"], base_env)
            ref = json.loads(done.stdout)["image_ref"]
            gb = [sys.executable, "-m", "gardenbuild", "-q"]

            bb.say("describe: gardenbuild info against skopeo inspect")
            info = [timed([*gb, "info", ref, "--no-tls-verify", "--json"], env)[0] for _ in range(args.repeat)]
            usual = [timed(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"], env)[0]
                     for _ in range(args.repeat)]
            figures["describe from the registry (no pull), s"] = (median(info), median(usual))

            bb.say("pull: cold (an empty storage) and again")
            pulls, usual_pulls = [], []
            for _ in range(max(1, min(args.repeat, 3))):
                wipe(env)
                shutil.rmtree(work / "consumer", ignore_errors=True)
                pulls.append(timed([*gb, "pull", ref, "--no-tls-verify"], env)[0])
                wipe(env)
                usual_pulls.append(timed(["buildah", "pull", "-q", "--tls-verify=false", f"docker://{ref}"], env)[0])
            wipe(env)
            shutil.rmtree(work / "consumer", ignore_errors=True)
            timed([*gb, "pull", ref, "--no-tls-verify"], env)
            again = [timed([*gb, "pull", ref, "--no-tls-verify"], env)[0] for _ in range(args.repeat)]
            usual_again = [timed(["buildah", "pull", "-q", "--tls-verify=false", f"docker://{ref}"], env)[0]
                           for _ in range(args.repeat)]
            figures["pull, cold, s"] = (median(pulls), median(usual_pulls))
            figures["pull, again, s"] = (median(again), median(usual_again))

            bb.say("load of the pulled garden (a new process, imports included)")
            loads, inner = [], []
            for _ in range(args.repeat):
                seconds, done = timed([sys.executable, "-c", LOAD, ref], env)
                loads.append(seconds)
                inner.append(json.loads(done.stdout)["s"])
            inspects = [timed(["buildah", "inspect", "--type", "image", ref], env)[0] for _ in range(args.repeat)]
            figures["load() of a pulled garden, whole process, s"] = (median(loads), median(inspects))
            figures["load() itself, in the process, s"] = (median(inner), None)

            bb.say("calls: a fresh container each")
            cold, usual_cold = [], []
            script = USUAL_CALL.format(inp=json.dumps(INPUT))
            for _ in range(args.repeat):
                seconds, done = timed([sys.executable, "-c", CALL, ref, json.dumps(INPUT)], env)
                cold.append(json.loads(done.stdout)["s"])
                started = time.perf_counter()
                timed(["buildah", "run", "--isolation", "chroot",
                       subprocess.run(["buildah", "from", "-q", "--pull=never", ref], env=env, capture_output=True,
                                      text=True, check=True).stdout.strip(),
                       "/opt/garden/venv/bin/python", "-c", script], env)
                usual_cold.append(time.perf_counter() - started)
                subprocess.run(["buildah", "rm", "--all"], env=env, capture_output=True)
            figures["a call, fresh container (from Python), s"] = (median(cold), median(usual_cold))

            bb.say("calls: through a running gardenbuild serve")
            _, done = timed([*gb, "serve", ref, "--port", "0", "--detach", "--json"], env)
            server = json.loads(done.stdout)
            warm, posts = [], []
            body = json.dumps(INPUT).encode()
            for _ in range(args.repeat):
                seconds, done = timed([sys.executable, "-c", CALL, ref, json.dumps(INPUT)], env)
                warm.append(json.loads(done.stdout)["s"])
                started = time.perf_counter()
                request = urllib.request.Request(f"{server['url']}/pipelines/{PIPELINE}", data=body,
                                                 headers={"Content-Type": "application/json"})
                urllib.request.urlopen(request, timeout=30).read()
                posts.append(time.perf_counter() - started)
            figures["a call, warm (a gardenbuild serve running), s"] = (median(warm), median(posts))
        finally:
            if server is not None:
                subprocess.run([sys.executable, "-m", "gardenbuild", "-q", "serve", "--stop", str(server["port"])],
                               env=env, capture_output=True)
            registry.terminate()
            registry.wait()
            wipe(env)  # the consumer's storage; then the publisher's images of the bench's garden
            for name in sorted({n for i in Buildah().images(("localhost/gardens/consume-bench",
                                                              "localhost/gardenbuild/session/consume-bench"))
                                for n in i["names"]}):
                subprocess.run(["buildah", "rmi", name], capture_output=True)
    if args.json:
        print(json.dumps({k: {"gardenbuild": a, "usual": b} for k, (a, b) in figures.items()}, indent=2))
        return
    print(f"consume_bench: {json.dumps(bb.machine())}")
    print(f"{'':52}{'gardenbuild':>12}{'usual way':>12}")
    for name, (a, b) in figures.items():
        print(f"  {name:<50}{a:>12.3f}" + (f"{b:>12.3f}" if b is not None else ""))
    print("usual ways: skopeo inspect; buildah pull; buildah inspect; buildah run python -c (load, call); "
          "a plain HTTP POST")


if __name__ == "__main__":
    try:
        main()
    except bb.Failed as exc:
        raise SystemExit(f"consume_bench: {exc}")
