#!/usr/bin/env python3
"""gardenbuild vs the usual way, on the flagship example (examples/solubility).

    python bench/build_bench.py [--repeat N] [--edit-repeat N] [--json] [--skip-full-cold] [--keep]

Prints a table of wall-clock figures (``time.perf_counter``) for both ways of turning the
solubility notebook into an image: cold build, no-op rebuild, notebook-only rebuild, a
second garden sharing the dependencies, image size, and the latency of one call in a
fresh container. See bench/README.md for what each figure means and how it is measured.

Nothing in the repository is written: the example is copied into a temporary folder, every
image this script builds carries the label ``dev.gardenbuild.bench.run=<run id>`` (inherited
from a per-run base, see `nonce_base`) and exactly those images are removed at the end. The
only thing kept between runs is the usual way's base image, ``localhost/bench/usual-base:3.11``
(debootstrapped once, about a minute, then reused).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "solubility"
sys.path.insert(0, str(REPO))

GB_BASE = "localhost/gardenbuild/python:3.11"
USUAL_BASE = "localhost/bench/usual-base:3.11"
BENCH_LABEL = "dev.gardenbuild.bench.run"
PIPELINE = "predict_solubility"
CALL_INPUT = {"smiles": ["CCO"]}
# buildah flags of the reference (ENVIRONMENT.md); --pull=never as gardenbuild uses, so
# neither side spends time asking a registry about a localhost/ base.
BUD = ["buildah", "bud", "--isolation", "chroot", "--pull=never", "--layers", "--timestamp", "0"]

# The usual way's figures from /work/shared/ENVIRONMENT.md ("A reference point for speed").
REFERENCE = {"cold_s": 33.5, "noop_s": 0.31, "edit_s": 3.4, "size_mb": 804, "base_mb": 297,
             "run_total_s": 1.76, "run_load_s": 1.30, "run_call_s": 0.011}

T0 = time.perf_counter()
LOGS: list[Path] = []  # a folder to keep every build's output in (the work folder's logs/)


def say(message: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {message}", file=sys.stderr, flush=True)


# --- running things -----------------------------------------------------------------------

class Failed(Exception):
    pass


def sh(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, check: bool = True,
       stdin: bytes | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Run argv, capture its output; return (wall seconds, result)."""
    started = time.perf_counter()
    proc = subprocess.run([str(a) for a in argv], env=env, cwd=cwd, capture_output=True,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if check and proc.returncode != 0:
        out = (proc.stderr or b"").decode(errors="replace")[-3000:] + (proc.stdout or b"").decode(errors="replace")[-2000:]
        raise Failed(f"{' '.join(map(str, argv[:6]))} ... exited {proc.returncode}:\n{out}")
    return seconds, proc


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def gb_env(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GARDENBUILD_BASE_IMAGE"}
    env["GARDENBUILD_CACHE"] = str(cache)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def gardenbuild(*args: str, cache: Path, **extra: str) -> tuple[float, subprocess.CompletedProcess]:
    return sh([sys.executable, "-m", "gardenbuild", *args], env=gb_env(cache, **extra))


# --- images -------------------------------------------------------------------------------

def image_exists(ref: str) -> bool:
    return sh(["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref], check=False)[1].returncode == 0


def inspect(ref: str) -> dict[str, Any]:
    return json.loads(sh(["buildah", "inspect", "--type", "image", ref])[1].stdout)


def image_size(ref: str) -> int:
    """Bytes of the image's layers as its manifest lists them (uncompressed tars, as `buildah images` counts)."""
    manifest = json.loads(inspect(ref)["Manifest"])
    return sum(int(layer["size"]) for layer in manifest.get("layers", []))


def image_digest(ref: str) -> str:
    return sh(["buildah", "inspect", "--type", "image", "--format", "{{.FromImageDigest}}", ref])[1].stdout.decode().strip()


def nonce_base(source: str, ref: str, run_id: str, work: Path) -> str:
    """``source`` plus a one-line file naming ``ref``, committed as ``ref``.

    buildah's layer cache matches a step by the top layer and history it builds on, so
    every image built on this base is cold however many builds of the same Containerfile
    this machine has seen (the flagship example's env image exists here already, built by
    others). A label alone would not do: an empty layer on the same parent gets the same
    layer id. The label is inherited by everything built on this base, intermediate images
    included, which is how `cleanup_images` finds exactly what this run made.
    """
    stamp = work / f"bench-base-{secrets.token_hex(4)}"
    stamp.write_text(f"{ref}\n")
    _, proc = sh(["buildah", "from", "--pull=never", "--quiet", source])
    ctr = proc.stdout.decode().strip()
    try:
        sh(["buildah", "copy", "--quiet", ctr, stamp, "/etc/gardenbuild-bench-base"])
        sh(["buildah", "config", "--label", f"{BENCH_LABEL}={run_id}", ctr])
        sh(["buildah", "commit", "--quiet", "--timestamp", "0", ctr, ref])
    finally:
        sh(["buildah", "rm", ctr], check=False)
        stamp.unlink()
    return ref


def ensure_usual_base(work: Path) -> dict[str, Any]:
    """The usual way's base, made once as ENVIRONMENT.md describes, then reused."""
    if image_exists(USUAL_BASE):
        return {"made": False, "seconds": 0.0}
    if shutil.which("debootstrap") is None:
        raise Failed("debootstrap is not installed (apt-get install -y debootstrap); it makes the usual way's base")
    from gardenbuild.backends.base import host_mirror

    say(f"making {USUAL_BASE} once: debootstrap --variant=minbase --include=python3,python3-venv,python3-pip bookworm")
    rootfs = work / "usual-rootfs"
    started = time.perf_counter()
    sh(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip", "bookworm", rootfs,
        host_mirror()])
    _, proc = sh(["buildah", "from", "scratch"])
    ctr = proc.stdout.decode().strip()
    try:
        sh(["buildah", "add", ctr, rootfs, "/"])
        sh(["buildah", "config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env", "LANG=C.UTF-8", "--cmd", "python3", ctr])
        sh(["buildah", "commit", "--quiet", "--timestamp", "0", ctr, USUAL_BASE])
    finally:
        sh(["buildah", "rm", ctr], check=False)
        shutil.rmtree(rootfs, ignore_errors=True)
    return {"made": True, "seconds": round(time.perf_counter() - started, 1)}


def bench_images(run_id: str) -> list[str]:
    _, proc = sh(["buildah", "images", "-a", "--json", "--no-trunc", "--filter", f"label={BENCH_LABEL}={run_id}"])
    return [i["id"] for i in json.loads(proc.stdout or b"[]")]


def cleanup_images(run_id: str) -> int:
    """Remove every image carrying this run's label (children before parents); return how many."""
    removed = 0
    for _ in range(20):
        ids = bench_images(run_id)
        if not ids:
            break
        progress = False
        for image_id in ids:
            if sh(["buildah", "rmi", "--force", image_id], check=False)[1].returncode == 0:
                removed += 1
                progress = True
        if not progress:
            say(f"warning: could not remove {len(ids)} bench image(s): {', '.join(i[:12] for i in ids)}")
            break
    return removed


# --- the two gardens ----------------------------------------------------------------------

def copy_example(dest: Path, name: str, *, base: tuple[str, str] | None, keep_lock: bool = True) -> Path:
    """A copy of the example named ``name``; its lock re-pointed at ``base`` (ref, digest)."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".gardenbuild", ".ipynb_checkpoints"))
    gardenfile = dest / "Gardenfile.toml"
    source = gardenfile.read_text()
    renamed = re.sub(r'(?m)^name = "solubility"$', f'name = "{name}"', source, count=1)
    assert renamed != source, "the example's [garden] name line was not found"
    gardenfile.write_text(renamed)
    lock = dest / "Gardenfile.lock"
    if not keep_lock:
        lock.unlink()
    elif base is not None:
        # The Gardenfile names no base_image, so the build uses the lock's; pointing the lock at
        # an identical base with a fresh id changes nothing but buildah's cache hits.
        ref, digest = base
        text_ = lock.read_text()
        text_ = re.sub(r'(?m)^base_image = ".*"$', f'base_image = "{ref}"', text_, count=1)
        text_ = re.sub(r'(?m)^base_digest = ".*"$', f'base_digest = "{digest}"', text_, count=1)
        lock.write_text(text_)
    return dest


def edit_notebook(path: Path, statement: str) -> None:
    """Append a harmless statement to the notebook's last code cell."""
    nb = json.loads(path.read_text())
    cell = [c for c in nb["cells"] if c["cell_type"] == "code"][-1]
    source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    cell["source"] = (source.rstrip("\n") + "\n" + statement).splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1) + "\n")


def notebook_script(path: Path, session: str) -> str:
    """What a person would do by hand (jupyter nbconvert --to script, more or less): the code
    cells in order, magics commented out, gardenbuild's decorator replaced by a no-op, then
    ``dill.dump_module``. Prints the notebook's own run time for the bench to read."""
    nb = json.loads(path.read_text())
    out = ["# converted from the notebook by bench/build_bench.py: code cells, in order",
           "import time as _bench_time",
           "_bench_t0 = _bench_time.perf_counter()",
           "def garden_pipeline(f):  # gardenbuild's decorator; only a tag",
           "    return f", ""]
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if source.lstrip().startswith("%%"):
            out.append("# (cell magic skipped)")
            continue
        for line in source.splitlines():
            if re.match(r"\s*from gardenbuild import garden_pipeline\s*$", line):
                line = "# " + line
            elif re.match(r"\s*[%!]", line):
                line = "# " + line
            out.append(line)
        out.append("")
    out += ["_bench_ran = _bench_time.perf_counter() - _bench_t0",
            "import dill",
            f"dill.dump_module({session!r})",
            'print(f"BENCH-NOTEBOOK-SECONDS {_bench_ran:.3f} '
            'BENCH-DUMP-SECONDS {_bench_time.perf_counter() - _bench_t0 - _bench_ran:.3f}", flush=True)', ""]
    return "\n".join(out)


USUAL_CONTAINERFILE = """\
FROM {base}
ENV SOURCE_DATE_EPOCH=0 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY wheels/ /wheels/
COPY requirements.txt /requirements.txt
RUN python3 -m venv /venv \\
 && /venv/bin/pip install --no-cache-dir --no-index --find-links /wheels -r /requirements.txt
COPY app/ /app/
WORKDIR /app
RUN /venv/bin/python train.py
"""

USUAL_CALL = """\
import json, sys, time
t0 = time.perf_counter()
import dill
dill.load_module("/app/session.pkl")
t1 = time.perf_counter()
import __main__
result = __main__.predict_solubility(**json.loads(sys.argv[1]))
t2 = time.perf_counter()
print("BENCH-CALL " + json.dumps({"load_s": t1 - t0, "call_s": t2 - t1, "result": result}))
"""


def usual_context(dest: Path, garden: Path, wheel_files: list[Path], requirements: list[str], base: str) -> Path:
    """The hand-written way's build context: Containerfile, wheels/, requirements.txt, app/."""
    (dest / "wheels").mkdir(parents=True)
    for wheel in wheel_files:
        os.link(wheel, dest / "wheels" / wheel.name)
    (dest / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (dest / "Containerfile").write_text(USUAL_CONTAINERFILE.format(base=base))
    sync_app(dest, garden)
    return dest


def sync_app(context: Path, garden: Path) -> None:
    """app/ = the data and the notebook as a script (re-made after each notebook edit)."""
    app = context / "app"
    if app.exists():
        shutil.rmtree(app)
    shutil.copytree(garden / "data", app / "data")
    notebook = garden / "solubility.ipynb"
    (app / "train.py").write_text(notebook_script(notebook, "/app/session.pkl"))


# --- measurements -------------------------------------------------------------------------

def streamed(argv: list[str], *, env: dict[str, str] | None = None) -> tuple[float, bytes, list[tuple[float, str]]]:
    """Run argv; return (wall seconds, stdout, log lines each with its arrival time).

    The log is stderr for gardenbuild (its stdout is the --json document) and stdout plus
    stderr for buildah. The arrival times split a build into phases (`gb_phases`,
    `usual_phases`).
    """
    argv = [str(a) for a in argv]
    merge = argv[0] == "buildah"
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if merge else out,
                                stderr=subprocess.STDOUT if merge else subprocess.PIPE)
        pipe = proc.stdout if merge else proc.stderr
        assert pipe is not None
        lines = [(time.perf_counter() - started, raw.decode(errors="replace").rstrip("\n")) for raw in pipe]
        returncode = proc.wait()
        seconds = time.perf_counter() - started
        out.seek(0)
        stdout = out.read()
    log = "\n".join(line for _, line in lines)
    if LOGS:  # kept with --keep
        name = f"{len(list(LOGS[0].iterdir())):03d}-{'bud' if merge else 'gardenbuild'}.log"
        (LOGS[0] / name).write_text(" ".join(argv) + f"\n({seconds:.2f} s)\n\n" + stdout.decode(errors="replace")
                                    + "\n--- log\n" + "\n".join(f"{t:7.2f} {line}" for t, line in lines) + "\n")
    if returncode != 0:
        raise Failed(f"{' '.join(argv[:6])} ... exited {returncode}:\n{log[-3000:]}\n{stdout.decode(errors='replace')[-2000:]}")
    return seconds, stdout, lines


def first(lines: list[tuple[float, str]], pattern: str, after: float = -1.0) -> float | None:
    """Arrival time of the first line matching ``pattern`` at or after ``after``."""
    rx = re.compile(pattern)
    return next((t for t, line in lines if t >= after and rx.search(line)), None)


def span(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 3)


def gb_phases(lines: list[tuple[float, str]], total: float) -> dict[str, float | None]:
    """Where a notebook-step build goes, from the arrival times of its -v log lines."""
    step = first(lines, r"^==> run .* inside the image")
    if step is None:
        return {}
    run = first(lines, r"STEP \d+/\d+: RUN .*gardenbuild\.runtime\.execute", step)
    ran = first(lines, r"gardenbuild: ran \d+ code cells", step)
    saved = first(lines, r"gardenbuild: saved session", step)
    tested = first(lines, r'GARDENBUILD-RESULT \{"tests_in_run"', step)  # the tests, in the notebook's step
    test = first(lines, r"^==> run \d+ pipeline test", step)
    api = first(lines, r"^==> build the garden image", step)
    emit = first(lines, r"^==> write the build summary", step)
    return {
        "start_to_notebook_step_s": round(step, 3),  # interpreter, imports, plan, cached steps
        "buildah_to_RUN_s": span(step, run),  # buildah start, FROM, COPY garden/ ...
        "RUN_python_and_cells_s": span(run, ran),  # container start, interpreter, the cells
        "session_dump_s": span(ran, saved),
        "tests_s": span(saved, tested),
        "commit_and_metadata_s": span(tested or saved, test),  # the RUN's end, the stage's commit, the digest
        "garden_image_s": span(api, emit),  # Containerfile.api: /garden/api/, labels, commit
        "finish_s": span(emit, total),
    }


def usual_phases(lines: list[tuple[float, str]], total: float) -> dict[str, float | None]:
    run = first(lines, r"STEP \d+/\d+: RUN /venv/bin/python train\.py")
    done = first(lines, r"BENCH-NOTEBOOK-SECONDS")
    if run is None or done is None:
        return {}
    return {"buildah_to_RUN_s": round(run, 3), "RUN_python_cells_dump_s": span(run, done), "commit_s": span(done, total)}


def gb_build(garden: Path, cache: Path, *extra_args: str, **extra_env: str) -> dict[str, Any]:
    """One `gardenbuild -v build --json`: wall time, steps (from --json), notebook time and phases (from the log)."""
    seconds, stdout, lines = streamed([sys.executable, "-m", "gardenbuild", "-v", "build", str(garden), "--json",
                                       *extra_args], env=gb_env(cache, **extra_env))
    data = json.loads(stdout)
    log = "\n".join(line for _, line in lines)
    out: dict[str, Any] = {
        "seconds": seconds, "image": data["image"], "env_image": data["env_image"],
        "steps": {s["id"]: {"cached": s["cached"], "seconds": s["seconds"], "phases": s.get("phases", [])}
                  for s in data["steps"]},
        "build_phases": data.get("phases", []),
        "cache_hits": len(re.findall(r"Using cache", log)), "phases": gb_phases(lines, seconds),
    }
    m = re.search(r"gardenbuild: ran \d+ code cells in ([0-9.]+) s", log)
    out["notebook_s"] = float(m.group(1)) if m else None
    m = re.search(r"gardenbuild: saved session \(.*?\) in ([0-9.]+) s", log)
    out["dump_s"] = float(m.group(1)) if m else None
    return out


def usual_build(context: Path, tag: str) -> dict[str, Any]:
    seconds, _, lines = streamed([*BUD, "-t", tag, "-f", context / "Containerfile", context])
    log = "\n".join(line for _, line in lines)
    m = re.search(r"BENCH-NOTEBOOK-SECONDS ([0-9.]+) BENCH-DUMP-SECONDS ([0-9.]+)", log)
    return {"seconds": seconds, "cache_hits": len(re.findall(r"Using cache", log)),
            "notebook_s": float(m.group(1)) if m else None, "dump_s": float(m.group(2)) if m else None,
            "phases": usual_phases(lines, seconds)}


def gb_run(garden: Path, cache: Path) -> dict[str, float]:
    seconds, proc = gardenbuild("run", str(garden), PIPELINE, "--input", json.dumps(CALL_INPUT), "--json", cache=cache)
    timings = json.loads(proc.stdout)["timings"]
    return {"cli_s": seconds, "total_s": timings["total_s"], "container_s": timings["container_s"],
            "load_s": timings["load_s"], "call_s": timings["call_s"]}


def usual_run(tag: str) -> dict[str, float]:
    started = time.perf_counter()
    _, proc = sh(["buildah", "from", "--pull=never", "--quiet", tag])
    ctr = proc.stdout.decode().strip()
    try:
        _, proc = sh(["buildah", "run", "--isolation", "chroot", ctr, "--", "/venv/bin/python", "-c", USUAL_CALL,
                      json.dumps(CALL_INPUT)])
    finally:
        sh(["buildah", "rm", ctr], check=False)
    total = time.perf_counter() - started
    line = next(l for l in proc.stdout.decode().splitlines() if l.startswith("BENCH-CALL "))
    inner = json.loads(line.split(" ", 1)[1])
    return {"total_s": total, "load_s": inner["load_s"], "call_s": inner["call_s"],
            "container_s": max(total - inner["load_s"] - inner["call_s"], 0.0)}


def floor(work: Path, lock: Any, store: Any, load_s: float) -> dict[str, Any]:
    """The least each part of a build costs here, done directly: uv installing the locked
    wheels into an empty venv on the host (then compiling its bytecode), those files written
    as one layer tar, an empty container started, run, committed and removed, and (from the
    call figures) loading the session."""
    from gardenbuild.backends.deps import find_uv, lock_text

    out: dict[str, Any] = {}
    house = work / "floor-wheels"
    house.mkdir()
    for pin in lock.packages:
        os.link(store.path_for(pin), house / store.path_for(pin).name)
    (work / "floor-requirements.txt").write_text(lock_text(list(lock.packages)))
    venv = work / "floor-venv"
    uv = find_uv()
    env = {**os.environ, "UV_NO_CONFIG": "1"}
    out["uv_venv_s"], _ = sh([uv, "venv", "--no-cache", "--quiet", "--python", "python3.11", venv], env=env)
    out["uv_install_s"], _ = sh([uv, "pip", "install", "--quiet", "--offline", "--no-index", "--no-cache",
                                 "--find-links", house, "--require-hashes", "--no-deps", "--python", venv / "bin/python",
                                 "-r", work / "floor-requirements.txt"], env=env)
    out["compileall_s"], _ = sh([venv / "bin/python", "-m", "compileall", "-qq", "-j", "0",
                                 "--invalidation-mode", "unchecked-hash", venv / "lib"], check=False)
    out["tar_s"], _ = sh(["tar", "-cf", work / "floor-layer.tar", "-C", venv, "."])
    out["tar_bytes"] = (work / "floor-layer.tar").stat().st_size
    (work / "floor-layer.tar").unlink()
    started = time.perf_counter()
    out["from_s"], proc = sh(["buildah", "from", "--pull=never", "--quiet", GB_BASE])
    ctr = proc.stdout.decode().strip()
    try:
        out["run_true_s"], _ = sh(["buildah", "run", "--isolation", "chroot", ctr, "--", "true"])
        out["commit_s"], proc = sh(["buildah", "commit", "--quiet", "--timestamp", "0", ctr])
        image = proc.stdout.decode().strip()
    finally:
        out["rm_s"], _ = sh(["buildah", "rm", ctr], check=False)
    out["empty_container_s"] = time.perf_counter() - started
    sh(["buildah", "rmi", image], check=False)
    out["session_load_s"] = load_s
    return out


def phase_line(phases: list[dict[str, Any]], width: int = 8) -> str:
    """A step's phases in one line: the biggest first, as `name seconds`."""
    top = sorted(phases, key=lambda p: -p["seconds"])[:width]
    return ", ".join(f"{p['name'][:38]} {p['seconds']:.2f}" for p in top)


def medians(samples: list[dict[str, float]]) -> dict[str, float]:
    return {k: median([s[k] for s in samples]) for k in samples[0]} if samples else {}


def other_buildahs() -> int:
    """buildah processes running right now (not ours between measurements): a shared-machine hint."""
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "buildah":
                    count += 1
            except OSError:
                pass
    return count


def machine() -> dict[str, Any]:
    mem = ""
    try:
        mem = next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split(":")[1].strip()
    except (OSError, StopIteration):
        pass
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "mem": mem, "python": platform.python_version(),
            "buildah": subprocess.run(["buildah", "--version"], capture_output=True, text=True).stdout.split()[2],
            "git": rev + ("+dirty" if dirty else "")}


# --- the benchmark ------------------------------------------------------------------------

def run_bench(args: argparse.Namespace, work: Path, run_id: str) -> dict[str, Any]:
    from gardenbuild.plan import lockfile
    from gardenbuild.backends.deps import WheelStore
    from gardenbuild.report import NullReporter

    r: dict[str, Any] = {"run_id": run_id, "machine": machine(), "load_start": os.getloadavg(),
                         "buildah_procs_start": other_buildahs(), "repeat": args.repeat,
                         "edit_repeat": args.edit_repeat, "cold_repeat": args.cold_repeat}
    lock = lockfile.read(EXAMPLE)
    assert lock is not None, "examples/solubility has no Gardenfile.lock"
    if not image_exists(GB_BASE):
        raise Failed(f"{GB_BASE} is missing: run `python -m gardenbuild base bootstrap --python 3.11` first")
    r["usual_base"] = ensure_usual_base(work)

    # 1. Fully cold: no Gardenfile.lock, empty step store, empty wheel and uv caches, a base
    #    no build has used. Its wheels then seed the warm wheel cache.
    warm = work / "warm-cache"
    if not args.skip_full_cold:
        say("fully cold gardenbuild build (resolve + download + build)")
        full_base = nonce_base(GB_BASE, f"localhost/bench/gb-base:{run_id}-full", run_id, work)
        full = copy_example(work / "full", f"bench-solfull-{run_id}", base=None, keep_lock=False)
        full_cache = work / "cache-full"
        # With no lock the base must be named (the flavor's default is a registry image).
        r["gb_full_cold"] = gb_build(full, full_cache, "--base-image", full_base, UV_CACHE_DIR=str(work / "uv-cache"))
        shutil.copytree(full_cache / "wheels", warm / "wheels", copy_function=os.link)
    store = WheelStore(warm)
    missing = [w for w in lock.packages if not store.has(w)]
    if missing:  # the example's lock pins wheels the fresh resolution did not pick (or it was skipped)
        say(f"downloading {len(missing)} locked wheel(s) into the warm wheel cache (not timed)")
        store.fetch(list(lock.packages), NullReporter())
    wheel_files = [store.path_for(w) for w in lock.packages]
    r["wheels"] = {"count": len(wheel_files), "bytes": sum(p.stat().st_size for p in wheel_files),
                   "topped_up": len(missing)}

    # 2. Cold builds, wheels local: a fresh step store holding hard links to the warm wheels,
    #    fresh bases for both sides (an empty layer cache), the same wheel files for both.
    r["gb_cold"], r["usual_cold"] = [], []
    for i in range(args.cold_repeat):
        tag = run_id if i == 0 else f"{run_id}-{i}"
        gb_base = nonce_base(GB_BASE, f"localhost/bench/gb-base:{tag}", run_id, work)
        usual_base = nonce_base(USUAL_BASE, f"localhost/bench/usual-base:{tag}", run_id, work)
        gb_pin = (gb_base, image_digest(gb_base))
        cache = work / f"cache-{i}"
        shutil.copytree(warm / "wheels", cache / "wheels", copy_function=os.link)
        garden = copy_example(work / f"garden-{i}", f"bench-sol-{run_id}", base=gb_pin)
        say(f"cold gardenbuild build{f' {i + 1}/{args.cold_repeat}' if args.cold_repeat > 1 else ''} "
            "(empty step store and layer cache, wheels local)")
        r["gb_cold"].append(gb_build(garden, cache))
        usual = usual_context(work / f"usual-{i}", garden, wheel_files, list(lock.requirements), usual_base)
        usual_tag = f"localhost/bench/usual-sol:{run_id}"
        say("cold usual build (buildah bud --layers, empty layer cache, wheels local)")
        r["usual_cold"].append(usual_build(usual, usual_tag))
    gb_cold = r["gb_cold"][-1]
    # Sizes (layer bytes as the manifests list them), before later builds trim the garden's
    # older images.
    r["sizes"] = {"gb_image": image_size(gb_cold["image"]), "gb_env": image_size(gb_cold["env_image"]),
                  "gb_base": image_size(gb_base), "gb_base_original": image_size(GB_BASE),
                  "usual_image": image_size(usual_tag), "usual_base": image_size(usual_base),
                  "usual_base_original": image_size(USUAL_BASE)}


    # 3. No-op rebuilds (alternating, so a busy spell on the machine hits both).
    say(f"no-op rebuilds x{args.repeat}")
    r["gb_noop"], r["usual_noop"] = [], []
    for _ in range(args.repeat):
        b = gb_build(garden, cache)
        if not all(s["cached"] for s in b["steps"].values()):
            raise Failed(f"a no-op gardenbuild build ran steps: {b['steps']}")
        r["gb_noop"].append(b["seconds"])
        r["usual_noop"].append(usual_build(usual, usual_tag)["seconds"])

    # 4. Notebook-only rebuilds: one statement appended to the last code cell each time.
    say(f"notebook-only rebuilds x{args.edit_repeat}")
    r["gb_edit"], r["usual_edit"] = [], []
    for i in range(args.edit_repeat):
        edit_notebook(garden / "solubility.ipynb", f"_bench_edit = {i + 1}")
        r["gb_edit"].append(gb_build(garden, cache))
        sync_app(usual, garden)
        r["usual_edit"].append(usual_build(usual, usual_tag))

    # 5. A second garden: another name, a slightly different notebook, the same requirements,
    #    the same step store and base.
    say("second garden sharing the dependencies")
    second = copy_example(work / "second", f"bench-sol2-{run_id}", base=gb_pin)
    edit_notebook(second / "solubility.ipynb", 'print("second garden")')
    r["gb_second"] = gb_build(second, cache)
    r["gb_second"]["env_reused"] = (r["gb_second"]["env_image"] == gb_cold["env_image"]
                                    and r["gb_second"]["steps"]["build-env"]["cached"])
    usual2 = usual_context(work / "usual-second", second, wheel_files, list(lock.requirements), usual_base)
    r["usual_second"] = usual_build(usual2, f"localhost/bench/usual-sol2:{run_id}")

    # 7. One call in a fresh container, alternating.
    say(f"call latency x{args.repeat}")
    gb_runs, usual_runs = [], []
    for _ in range(args.repeat):
        gb_runs.append(gb_run(garden, cache))
        usual_runs.append(usual_run(usual_tag))
    r["gb_run"] = {"median": medians(gb_runs), "samples": gb_runs}
    r["usual_run"] = {"median": medians(usual_runs), "samples": usual_runs}

    # 8. The floor: what the same work costs at the least on this machine.
    say("the floor: uv into an empty venv, the env's bytes as a tar, an empty container, a session load")
    r["floor"] = floor(work, lock, store, r["gb_run"]["median"]["load_s"])

    r["load_end"] = os.getloadavg()
    r["buildah_procs_end"] = other_buildahs()
    return r


# --- output -------------------------------------------------------------------------------

def fmt_s(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f} s"


def mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def med(items: list[dict[str, Any]], *path: str) -> float | None:
    """Median over builds of a nested figure (None where a build lacks it)."""
    values = []
    for item in items:
        for key in path:
            item = item.get(key) if isinstance(item, dict) else None
        if isinstance(item, (int, float)):
            values.append(float(item))
    return median(values) if values else None


def table(r: dict[str, Any]) -> str:
    m, ref = r["machine"], REFERENCE
    lines = [
        f"gardenbuild vs the usual way: examples/solubility  (run {r['run_id']}, gardenbuild {m['git']})",
        f"machine: {m['nproc']} cores, {m['mem']}, Python {m['python']}, buildah {m['buildah']}; load avg "
        f"{r['load_start'][0]:.2f} -> {r['load_end'][0]:.2f}; other buildah processes {r['buildah_procs_start']} -> "
        f"{r['buildah_procs_end']}",
        f"wheels: {r['wheels']['count']} locked, {mb(r['wheels']['bytes'])}; medians of: cold x{r['cold_repeat']}, "
        f"no-op and call x{r['repeat']}, notebook edit x{r['edit_repeat']}",
        "",
        f"{'figure':<40}{'gardenbuild':>24}{'usual way':>14}{'ref (usual)':>12}",
    ]

    def row(label: str, gb: str = "", usual: str = "", reference: str = "") -> None:
        lines.append(f"{label:<40}{gb:>24}{usual:>14}{reference:>12}".rstrip())

    gc, uc = r["gb_cold"], r["usual_cold"]
    row("cold build, wheels local", fmt_s(med(gc, "seconds")), fmt_s(med(uc, "seconds")), fmt_s(ref["cold_s"]))
    row("  env image / notebook step / tests", "/".join(f"{med(gc, 'steps', k, 'seconds'):.1f}" for k in
                                                       ("build-env", "execute-notebook", "test")) + " s", "", "")
    if len(gc) > 1:
        row("  min - max", f"{min(b['seconds'] for b in gc):.1f} - {max(b['seconds'] for b in gc):.1f} s",
            f"{min(b['seconds'] for b in uc):.1f} - {max(b['seconds'] for b in uc):.1f} s")
    row("  layer-cache hits (must be 0)", str(sum(b["cache_hits"] for b in gc)), str(sum(b["cache_hits"] for b in uc)))
    if "gb_full_cold" in r:
        f = r["gb_full_cold"]
        before = f["seconds"] - sum(st["seconds"] for st in f["steps"].values())
        row("fully cold (resolve+download+build)", fmt_s(f["seconds"]), "-")
        row("  CLI+resolve/download/env+nb+tests",
            f"{before:.1f}/{f['steps']['fetch']['seconds']:.1f}/" + "+".join(
                f"{f['steps'][k]['seconds']:.1f}" for k in ("build-env", "execute-notebook", "test")))
    row("no-op rebuild", fmt_s(median(r["gb_noop"]), 2), fmt_s(median(r["usual_noop"]), 2), fmt_s(ref["noop_s"], 2))
    ge, ue = r["gb_edit"], r["usual_edit"]
    gn, un = med(ge, "notebook_s"), med(ue, "notebook_s")
    row("notebook-only rebuild", fmt_s(med(ge, "seconds")), fmt_s(med(ue, "seconds")), fmt_s(ref["edit_s"]))
    row("  the notebook's own run time (cells)", fmt_s(gn, 2), fmt_s(un, 2))
    row("  rebuild minus notebook", fmt_s(med(ge, "seconds") - gn if gn else None),
        fmt_s(med(ue, "seconds") - un if un else None))
    p = ("start_to_notebook_step_s", "buildah_to_RUN_s", "RUN_python_and_cells_s", "session_dump_s", "tests_s",
         "commit_and_metadata_s", "garden_image_s")
    row("  CLI|to RUN|RUN|dump|tests|commit|api", "|".join(f"{med(ge, 'phases', k) or 0:.1f}" for k in p))
    q = ("buildah_to_RUN_s", "RUN_python_cells_dump_s", "commit_s")
    row("  (usual: to RUN|RUN incl. dump|commit)", "", "|".join(f"{med(ue, 'phases', k) or 0:.1f}" for k in q))
    g2, u2 = r["gb_second"], r["usual_second"]
    row("second garden, same deps", fmt_s(g2["seconds"]), fmt_s(u2["seconds"]))
    cached = sum(st["cached"] for st in g2["steps"].values())
    row("  deps reused? / steps (layers) cached", ("env image" if g2["env_reused"] else "NOT reused") +
        f" / {cached} of {len(g2['steps'])}", f"{u2['cache_hits']} of 7")
    z = r["sizes"]
    row("image size", mb(z["gb_image"]), mb(z["usual_image"]), f"{ref['size_mb']} MB")
    row("  of which base", mb(z["gb_base"]), mb(z["usual_base"]), f"{ref['base_mb']} MB")
    row("  of which deps + notebook", mb(z["gb_image"] - z["gb_base"]), mb(z["usual_image"] - z["usual_base"]))
    row("  of which COPYed wheels", "-", mb(r["wheels"]["bytes"]))
    gr, ur = r["gb_run"]["median"], r["usual_run"]["median"]
    row("one call, fresh container", fmt_s(gr["total_s"], 2), fmt_s(ur["total_s"], 2), fmt_s(ref["run_total_s"], 2))
    row("  container start + removal", fmt_s(gr["container_s"], 2), fmt_s(ur["container_s"], 2))
    row("  session load", fmt_s(gr["load_s"], 2), fmt_s(ur["load_s"], 2), fmt_s(ref["run_load_s"], 2))
    row("  the call", fmt_s(gr["call_s"], 3), fmt_s(ur["call_s"], 3), fmt_s(ref["run_call_s"], 3))
    row("  `gardenbuild run` command, wall", fmt_s(gr["cli_s"], 2))
    f = r.get("floor")
    if f:
        lines += ["", "the floor on this machine (the same work done directly) beside gardenbuild's phases:"]
        env_phases = gc[-1]["steps"]["build-env"]["phases"]
        row("  uv venv + install locked wheels (host)", fmt_s(f["uv_venv_s"] + f["uv_install_s"], 2))
        row("  + bytecode of every package", fmt_s(f["compileall_s"], 2))
        row(f"  the venv as one tar ({mb(f['tar_bytes'])})", fmt_s(f["tar_s"], 2))
        row("  empty container: from/run/commit/rm", "/".join(f"{f[k]:.2f}" for k in
                                                            ("from_s", "run_true_s", "commit_s", "rm_s")) + " s")
        row("  session load (one call)", fmt_s(f["session_load_s"], 2))
        lines.append(f"  cold build-env phases: {phase_line(env_phases)}")
        last = ge[-1]["steps"]
        for step in ("execute-notebook", "test", "build-api"):
            if not last[step]["cached"]:
                lines.append(f"  edit {step} ({last[step]['seconds']:.2f} s): {phase_line(last[step]['phases'])}")
        top = ge[-1].get("build_phases") or []
        lines.append("  edit, whole command: " + ", ".join(f"{p['name']} {p['seconds']:.2f}" for p in top))
    if r["usual_base"]["made"]:
        lines.append(f"(made {USUAL_BASE} first, {r['usual_base']['seconds']:.0f} s; later runs reuse it)")
    lines.append(f"bench wall time {r['bench_s']:.0f} s")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="repeats of the cheap figures (no-op, call); medians")
    parser.add_argument("--edit-repeat", type=int, default=3, help="repeats of the notebook-only rebuild")
    parser.add_argument("--cold-repeat", type=int, default=1, help="repeats of the cold builds (wheels local)")
    parser.add_argument("--json", action="store_true", help="print every figure and sample as JSON instead of the table")
    parser.add_argument("--skip-full-cold", action="store_true", help="skip the fully cold build (resolve + download)")
    parser.add_argument("--keep", action="store_true", help="keep the bench's images and work folder (for a look)")
    args = parser.parse_args()
    if min(args.repeat, args.edit_repeat, args.cold_repeat) < 1:
        parser.error("repeats must be at least 1")
    if os.geteuid() != 0:
        parser.error("run as root (buildah's chroot builds and debootstrap need it)")

    run_id = secrets.token_hex(4)
    work = Path(tempfile.mkdtemp(prefix=f"gardenbuild-bench-{run_id}-"))
    say(f"run {run_id}, work folder {work}")
    LOGS.append(work / "logs")
    LOGS[0].mkdir()
    try:
        result = run_bench(args, work, run_id)
    except Failed as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            say(f"kept {work} and the images labelled {BENCH_LABEL}={run_id}")
        else:
            removed = cleanup_images(run_id)
            shutil.rmtree(work, ignore_errors=True)
            say(f"removed {removed} bench image(s) and the work folder")
    result["bench_s"] = time.perf_counter() - T0
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
