#!/usr/bin/env python3
"""gardenbuild vs the usual way, on a machine-learning garden: PyTorch, and large weights.

    python bench/ml_bench.py [--repeat N] [--edit-repeat N] [--weights-mb MB] [--find-links DIR]
                             [--skip-torch] [--skip-weights] [--json] [--keep]

Two parts, each printed as a table beside the usual way of doing the same work (a
hand-written Containerfile: the locked wheels COPYed in and pip-installed with no network,
the notebook converted to a script and run in a RUN step; `bench/build_bench.py` has the
details):

1. examples/digits-torch: cold build (wheels already on this machine), notebook-only
   rebuild, image size, one call in a fresh container.
2. A garden holding a weights file of --weights-mb MB (random bytes): after a notebook edit,
   the rebuild time and the bytes a second push adds to a real registry on loopback, against
   the same garden with no weights and the usual way (the file in the app folder COPYed with
   the notebook).

torch comes from PyTorch's CPU index, or, where that cannot be reached, from a folder of
wheels (--find-links, default: pip's find-links setting, as /etc/pip.conf names it here).
Nothing in the repository is written; every image made carries this run's label and is
removed at the end (see build_bench.nonce_base).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_bench as bb  # noqa: E402  (the shared helpers: builds, images, timing)
from push_bench import free_port, wait_for  # noqa: E402

REPO = bb.REPO
DIGITS = REPO / "examples" / "digits-torch"
PIPELINE = "classify_digits"
CALL_INPUT = {"images": [[0] * 64, [16] * 64]}
TORCH_WHEEL = "torch-2.13.0+cpu-cp311-*.whl"

USUAL_CALL = bb.USUAL_CALL.replace("predict_solubility", PIPELINE)


def torch_wheels(named: str | None) -> str | None:
    """A folder holding the CPU torch wheel, when PyTorch's index is not the way (None: use the index)."""
    import urllib.request

    if named:
        return named
    try:
        urllib.request.urlopen("https://download.pytorch.org/whl/cpu/torch/", timeout=5).close()
        return None
    except OSError:
        pass
    found = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.find-links"],
                           capture_output=True, text=True).stdout.split()
    for place in found:
        if list(Path(place).glob(TORCH_WHEEL)):
            return place
    raise bb.Failed("neither https://download.pytorch.org/whl/cpu nor a find-links folder holding "
                    f"{TORCH_WHEEL} is here; name one with --find-links")


def copy_digits(dest: Path, name: str, wheels: str | None) -> Path:
    shutil.copytree(DIGITS, dest, ignore=shutil.ignore_patterns(".gardenbuild", ".ipynb_checkpoints"))
    gardenfile = dest / "Gardenfile.toml"
    text = gardenfile.read_text().replace('name = "digits-torch"', f'name = "{name}"', 1)
    if wheels is not None:  # the folder stands in for PyTorch's index
        text = text.replace('flavor = "torch"\n', f'flavor = "torch"\nindexes = []\nfind_links = ["{wheels}"]\n', 1)
    gardenfile.write_text(text)
    return dest


def usual_context(dest: Path, garden: Path, notebook: str, wheel_files: list[Path], requirements: list[str],
                  base: str, extra: dict[str, Path] | None = None) -> Path:
    """The hand-written build context: wheels/, requirements.txt, app/ (the script, plus ``extra`` files)."""
    (dest / "wheels").mkdir(parents=True)
    for wheel in wheel_files:
        os.link(wheel, dest / "wheels" / wheel.name)
    (dest / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (dest / "Containerfile").write_text(bb.USUAL_CONTAINERFILE.format(base=base))
    sync_app(dest, garden, notebook, extra)
    return dest


def sync_app(context: Path, garden: Path, notebook: str, extra: dict[str, Path] | None = None) -> None:
    app = context / "app"
    if app.exists():
        shutil.rmtree(app)
    app.mkdir()
    for name, source in (extra or {}).items():
        os.link(source, app / name)
    (app / "train.py").write_text(bb.notebook_script(garden / notebook, "/app/session.pkl"))


def usual_run(tag: str) -> dict[str, float]:
    saved = bb.USUAL_CALL, bb.CALL_INPUT
    bb.USUAL_CALL, bb.CALL_INPUT = USUAL_CALL, CALL_INPUT
    try:
        return bb.usual_run(tag)
    finally:
        bb.USUAL_CALL, bb.CALL_INPUT = saved


def gb_run(garden: Path, cache: Path) -> dict[str, float]:
    seconds, proc = bb.gardenbuild("run", str(garden), PIPELINE, "--input", json.dumps(CALL_INPUT), "--json",
                                   cache=cache)
    timings = json.loads(proc.stdout)["timings"]
    return {"cli_s": seconds, "total_s": timings["total_s"], "container_s": timings["container_s"],
            "load_s": timings["load_s"], "call_s": timings["call_s"]}


def locked_wheels(garden: Path, cache: Path) -> tuple[list[Path], list[str]]:
    from gardenbuild.backends.deps import WheelStore
    from gardenbuild.plan import lockfile

    lock = lockfile.read(garden)
    assert lock is not None
    store = WheelStore(cache)
    return [store.path_for(w) for w in lock.packages], list(lock.requirements)


# --- 1. torch --------------------------------------------------------------------------------

def bench_torch(args: argparse.Namespace, work: Path, run_id: str) -> dict[str, Any]:
    wheels = torch_wheels(args.find_links)
    r: dict[str, Any] = {"torch_from": wheels or "https://download.pytorch.org/whl/cpu"}
    # Resolve and download once (not timed: the network's figure, not the tool's), then a
    # cold build from a fresh step store whose wheels are hard links, on a base no build used.
    warm = work / "torch-warm"
    bb.say("torch: resolving and downloading the wheels once (not timed)")
    seed = copy_digits(work / "torch-seed", f"bench-torchseed-{run_id}", wheels)
    bb.gardenbuild("-q", "build", str(seed), "--base-image",
                   bb.nonce_base(bb.GB_BASE, f"localhost/bench/gb-base:{run_id}-torchseed", run_id, work), cache=warm)
    wheel_files, requirements = locked_wheels(seed, warm)
    r["wheels"] = {"count": len(wheel_files), "bytes": sum(p.stat().st_size for p in wheel_files)}

    gb_base = bb.nonce_base(bb.GB_BASE, f"localhost/bench/gb-base:{run_id}-torch", run_id, work)
    usual_base = bb.nonce_base(bb.USUAL_BASE, f"localhost/bench/usual-base:{run_id}-torch", run_id, work)
    cache = work / "torch-cache"
    shutil.copytree(warm / "wheels", cache / "wheels", copy_function=os.link)
    garden = copy_digits(work / "torch", f"bench-torch-{run_id}", wheels)
    shutil.copy2(seed / "Gardenfile.lock", garden / "Gardenfile.lock")
    bb.say("torch: cold gardenbuild build (empty step store and layer cache, wheels local)")
    r["gb_cold"] = bb.gb_build(garden, cache, "--base-image", gb_base)
    usual = usual_context(work / "torch-usual", garden, "digits.ipynb", wheel_files, requirements, usual_base)
    tag = f"localhost/bench/usual-torch:{run_id}"
    bb.say("torch: cold usual build")
    r["usual_cold"] = bb.usual_build(usual, tag)

    bb.say(f"torch: notebook-only rebuilds x{args.edit_repeat}")
    r["gb_edit"], r["usual_edit"] = [], []
    for i in range(args.edit_repeat):
        bb.edit_notebook(garden / "digits.ipynb", f"_bench_edit = {i + 1}")
        r["gb_edit"].append(bb.gb_build(garden, cache, "--base-image", gb_base))
        sync_app(usual, garden, "digits.ipynb")
        r["usual_edit"].append(bb.usual_build(usual, tag))

    r["sizes"] = {"gb_image": bb.image_size(r["gb_cold"]["image"]), "gb_base": bb.image_size(gb_base),
                  "usual_image": bb.image_size(tag), "usual_base": bb.image_size(usual_base)}
    bb.say(f"torch: call latency x{args.repeat}")
    gb_runs, usual_runs = [], []
    for _ in range(args.repeat):
        gb_runs.append(gb_run(garden, cache))
        usual_runs.append(usual_run(tag))
    r["gb_run"], r["usual_run"] = bb.medians(gb_runs), bb.medians(usual_runs)
    return r


# --- 2. weights ------------------------------------------------------------------------------

WEIGHTY_CELLS = [
    "import gardenbuild\nfrom gardenbuild import garden_pipeline\nWEIGHTS = gardenbuild.weights('big')\n",
    "@garden_pipeline\ndef weight_bytes() -> int:\n    with open(WEIGHTS, 'rb') as f:\n        return f.seek(0, 2)\n",
    "print(weight_bytes())\n",
]


def random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 << 20))
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def weighty_garden(dest: Path, name: str, weights: tuple[Path, str] | None) -> Path:
    """A one-pipeline base-flavor garden; with ``weights`` (file, sha256) declared as [[weights]]."""
    dest.mkdir(parents=True)
    cells = WEIGHTY_CELLS if weights else [WEIGHTY_CELLS[0].replace("gardenbuild.weights('big')", "None"),
                                           "@garden_pipeline\ndef weight_bytes() -> int:\n    return 0\n",
                                           WEIGHTY_CELLS[2]]
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": c.splitlines(keepends=True)} for c in cells],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (dest / "model.ipynb").write_text(json.dumps(nb, indent=1) + "\n")
    text = (f'notebook = "model.ipynb"\n\n[garden]\nname = "{name}"\ntitle = "Weights bench"\n'
            'description = "A bench garden"\nversion = "1.0.0"\nlicense = "MIT"\n\n'
            '[[garden.authors]]\nname = "Bench"\n\n[environment]\npython = "3.11"\n'
            'flavor = "base"\n\n[[pipeline]]\nname = "weight_bytes"\n')
    if weights:
        os.link(weights[0], dest / "big.bin")
        text += f'\n[[weights]]\nname = "big"\npath = "big.bin"\nsha256 = "{weights[1]}"\n'
    (dest / "Gardenfile.toml").write_text(text)
    return dest


class Registry:
    """docker-registry on a free loopback port with its own storage; bytes stored so far."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        config = root / "config.yml"
        config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\n"
                          f"http:\n  addr: 127.0.0.1:{self.port}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(self.port)
        self.host = f"127.0.0.1:{self.port}"

    def stored(self) -> int:
        return sum(p.stat().st_size for p in (self.root / "data").rglob("*") if p.is_file())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def bench_weights(args: argparse.Namespace, work: Path, run_id: str) -> dict[str, Any]:
    size = args.weights_mb * 10**6
    blob = work / "big.bin"
    bb.say(f"weights: writing {args.weights_mb} MB of random bytes")
    sha = random_file(blob, size)
    base = bb.nonce_base(bb.GB_BASE, f"localhost/bench/gb-base:{run_id}-weights", run_id, work)
    usual_base = bb.nonce_base(bb.USUAL_BASE, f"localhost/bench/usual-base:{run_id}-weights", run_id, work)
    cache = work / "weights-cache"
    data = work / "weights-data"
    (work / "registry").mkdir()
    registry = Registry(work / "registry")
    r: dict[str, Any] = {"weights_bytes": size}
    try:
        sides = {"gb_weights": weighty_garden(work / "weighty", f"bench-weighty-{run_id}", (blob, sha)),
                 "gb_none": weighty_garden(work / "light", f"bench-light-{run_id}", None)}
        for key, garden in sides.items():
            bb.say(f"weights: {key}: build, publish, notebook edit, rebuild, publish")
            first = bb.gb_build(garden, cache, "--base-image", base, GARDENBUILD_DATA=str(data))
            publish = ["publish", str(garden), "--registry", f"{registry.host}/lab", "--no-tls-verify"]
            bb.gardenbuild("-q", *publish, cache=cache, GARDENBUILD_DATA=str(data))
            before = registry.stored()
            bb.edit_notebook(garden / "model.ipynb", "_bench_edit = 1")
            edit = bb.gb_build(garden, cache, "--base-image", base, GARDENBUILD_DATA=str(data))
            bb.gardenbuild("-q", *publish, cache=cache, GARDENBUILD_DATA=str(data))
            r[key] = {"cold_s": first["seconds"], "edit_s": edit["seconds"], "pushed_after_edit": registry.stored() - before,
                      "ran_after_edit": [k for k, s in edit["steps"].items() if not s["cached"]],
                      "image_bytes": bb.image_size(edit["image"])}

        bb.say("weights: the usual way: the file in app/, COPYed with the notebook's script")
        garden = sides["gb_weights"]
        script_garden = weighty_garden(work / "usual-notebook", "usual", None)  # a notebook with no gardenbuild.weights
        nb = json.loads((script_garden / "model.ipynb").read_text())
        nb["cells"][0]["source"] = ["WEIGHTS = 'big.bin'\n"]
        nb["cells"][1]["source"] = WEIGHTY_CELLS[1].splitlines(keepends=True)
        (script_garden / "model.ipynb").write_text(json.dumps(nb))
        usual = usual_context(work / "weights-usual", script_garden, "model.ipynb", *locked_wheels(garden, cache),
                              usual_base, {"big.bin": blob})
        tag = f"localhost/bench/usual-weighty:{run_id}"
        first = bb.usual_build(usual, tag)
        push = ["buildah", "push", "--quiet", "--tls-verify=false", tag, f"docker://{registry.host}/usual/weighty:1"]
        bb.sh(push)
        before = registry.stored()
        bb.edit_notebook(script_garden / "model.ipynb", "_bench_edit = 1")
        sync_app(usual, script_garden, "model.ipynb", {"big.bin": blob})
        edit = bb.usual_build(usual, tag)
        bb.sh(push)
        r["usual"] = {"cold_s": first["seconds"], "edit_s": edit["seconds"], "pushed_after_edit": registry.stored() - before,
                      "image_bytes": bb.image_size(tag)}
    finally:
        registry.stop()
    return r


# --- output ----------------------------------------------------------------------------------

def torch_table(r: dict[str, Any]) -> list[str]:
    lines = [f"PyTorch: examples/digits-torch (torch from {r['torch_from']}; {r['wheels']['count']} wheels, "
             f"{bb.mb(r['wheels']['bytes'])})", "", f"{'figure':<40}{'gardenbuild':>16}{'usual way':>14}"]

    def row(label: str, gb: str, usual: str = "") -> None:
        lines.append(f"{label:<40}{gb:>16}{usual:>14}".rstrip())

    gc, uc = r["gb_cold"], r["usual_cold"]
    row("cold build, wheels local", bb.fmt_s(gc["seconds"]), bb.fmt_s(uc["seconds"]))
    row("  env image / notebook step / tests", "/".join(f"{gc['steps'][k]['seconds']:.1f}"
                                                       for k in ("build-env", "execute-notebook", "test")) + " s")
    row("  the notebook's own run time (cells)", bb.fmt_s(gc["notebook_s"], 2), bb.fmt_s(uc["notebook_s"], 2))
    row("notebook-only rebuild", bb.fmt_s(bb.med(r["gb_edit"], "seconds")), bb.fmt_s(bb.med(r["usual_edit"], "seconds")))
    z = r["sizes"]
    row("image size", bb.mb(z["gb_image"]), bb.mb(z["usual_image"]))
    row("  of which base", bb.mb(z["gb_base"]), bb.mb(z["usual_base"]))
    row("  of which COPYed wheels", "-", bb.mb(r["wheels"]["bytes"]))
    gr, ur = r["gb_run"], r["usual_run"]
    row("one call, fresh container", bb.fmt_s(gr["total_s"], 2), bb.fmt_s(ur["total_s"], 2))
    row("  session load (imports torch)", bb.fmt_s(gr["load_s"], 2), bb.fmt_s(ur["load_s"], 2))
    row("  the call", bb.fmt_s(gr["call_s"], 3), bb.fmt_s(ur["call_s"], 3))
    return lines


def kb_or_mb(n: int) -> str:
    return bb.mb(n) if n >= 10**6 else f"{n / 1e3:.0f} kB"


def weights_table(r: dict[str, Any]) -> list[str]:
    gw, gn, u = r["gb_weights"], r["gb_none"], r["usual"]
    lines = [f"Weights: a {bb.mb(r['weights_bytes'])} file, then a one-line notebook edit", "",
             f"{'figure':<40}{'gb, weights':>14}{'gb, none':>12}{'usual way':>14}"]

    def row(label: str, a: str, b: str, c: str) -> None:
        lines.append(f"{label:<40}{a:>14}{b:>12}{c:>14}")

    row("first build", bb.fmt_s(gw["cold_s"]), bb.fmt_s(gn["cold_s"]), bb.fmt_s(u["cold_s"]))
    row("rebuild after the notebook edit", bb.fmt_s(gw["edit_s"]), bb.fmt_s(gn["edit_s"]), bb.fmt_s(u["edit_s"]))
    row("bytes the second push adds", kb_or_mb(gw["pushed_after_edit"]), kb_or_mb(gn["pushed_after_edit"]),
        kb_or_mb(u["pushed_after_edit"]))
    row("image size", bb.mb(gw["image_bytes"]), bb.mb(gn["image_bytes"]), bb.mb(u["image_bytes"]))
    lines.append(f"steps the edit ran (gb, weights): {', '.join(gw['ran_after_edit'])}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the call; medians")
    parser.add_argument("--edit-repeat", type=int, default=2, help="repeats of the notebook-only rebuild")
    parser.add_argument("--weights-mb", type=int, default=500, help="size of the weights file (MB)")
    parser.add_argument("--find-links", help="a folder holding the CPU torch wheel (instead of PyTorch's index)")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--skip-weights", action="store_true")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON instead of the tables")
    parser.add_argument("--keep", action="store_true", help="keep the bench's images and work folder")
    args = parser.parse_args()
    if min(args.repeat, args.edit_repeat, args.weights_mb) < 1:
        parser.error("repeats and --weights-mb must be at least 1")
    if os.geteuid() != 0:
        parser.error("run as root (buildah's chroot builds need it)")
    if not bb.image_exists(bb.GB_BASE):
        parser.error(f"{bb.GB_BASE} is missing: run `python -m gardenbuild base bootstrap --python 3.11` first")

    run_id = secrets.token_hex(4)
    work = Path(tempfile.mkdtemp(prefix=f"gardenbuild-mlbench-{run_id}-"))
    bb.say(f"run {run_id}, work folder {work}")
    result: dict[str, Any] = {"run_id": run_id, "machine": bb.machine()}
    try:
        result["usual_base"] = bb.ensure_usual_base(work)
        if not args.skip_torch:
            result["torch"] = bench_torch(args, work, run_id)
        if not args.skip_weights:
            result["weights"] = bench_weights(args, work, run_id)
    except bb.Failed as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            bb.say(f"kept {work} and the images labelled {bb.BENCH_LABEL}={run_id}")
        else:
            removed = bb.cleanup_images(run_id)
            shutil.rmtree(work, ignore_errors=True)
            bb.say(f"removed {removed} bench image(s) and the work folder")
    result["bench_s"] = time.perf_counter() - bb.T0
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
        return 0
    m = result["machine"]
    out = [f"gardenbuild vs the usual way: ML gardens (run {run_id}, gardenbuild {m['git']}; {m['nproc']} cores, "
           f"{m['mem']}, buildah {m['buildah']})", ""]
    if "torch" in result:
        out += torch_table(result["torch"]) + [""]
    if "weights" in result:
        out += weights_table(result["weights"]) + [""]
    out.append(f"bench wall time {result['bench_s']:.0f} s")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
