"""`%pip` in a garden's Jupyter kernel: install at once, and declare it in the Gardenfile.

Loaded into the kernel by `gardenbuild notebook` (an IPython extension, from the Jupyter
prefix; this file runs in the garden's environment image and uses the standard library,
tomlkit, which the prefix carries, and gardenbuild.card from the host's package mounted
beside it, so a requirement's name is read as the build reads it). ``%pip install PKG...`` installs with uv
into the running environment, so the package is usable in the next cell, then adds each
requirement the Gardenfile does not declare yet to ``[environment].requirements`` (or to
its ``requirements_file``), keeping the file's comments and layout. The next build
resolves, locks and installs it like any other requirement, so the notebook and the
image never silently differ. A locked package that the install changed is named: the
build will lock it again at the version it resolves.

Other ``%pip`` commands (``list``, ``show``, ``freeze``...) go to uv unchanged.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shlex
import subprocess
import sys
from pathlib import Path

from gardenbuild.card import requirement_name as name_of  # the host's package, on the kernel's path

UV = os.environ.get("GARDENBUILD_UV", "/opt/gardenbuild-jupyter/uv")
GARDENFILE = Path(os.environ.get("GARDENBUILD_GARDENFILE", "/garden/Gardenfile.toml"))
#: The environment image's lock: what the garden has already (its own and its flavor's packages).
LOCK = Path(os.environ.get("GARDENBUILD_LOCK", "/opt/garden/requirements.lock"))
#: Options of ``pip install`` that take a value (the value is not a requirement).
_VALUED = {"-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url", "-f",
           "--find-links", "-t", "--target", "--python", "-e", "--editable"}


def requirements_in(args: list[str]) -> tuple[list[str], list[str]]:
    """The requirements among ``pip install`` arguments, and the options refused (which
    the Gardenfile cannot express: a file, an index, an editable install)."""
    reqs, refused, skip = [], [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg.startswith("-"):
            option = arg.split("=", 1)[0]
            if option in _VALUED:
                refused.append(arg)
                skip = "=" not in arg
            continue
        reqs.append(arg)
    return reqs, refused


def declared(path: Path) -> tuple[set[str], object, str]:
    """The names the Gardenfile declares, its parsed document, and where new ones go
    (``requirements`` or the path of its requirements file)."""
    import tomlkit

    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    env = doc.get("environment") or {}
    names = {name_of(str(r)) for r in env.get("requirements", [])}
    target = "requirements"
    if env.get("requirements_file"):
        req_file = path.parent / str(env["requirements_file"])
        if req_file.is_file():
            names |= {name_of(line) for line in req_file.read_text().splitlines() if line.strip()
                      and not line.lstrip().startswith(("#", "-"))}
        if "requirements" not in env:
            target = str(req_file)
    return names, doc, target


def locked_names(lock: Path) -> set[str]:
    try:
        return {name_of(line) for line in lock.read_text().splitlines() if line.strip() and not line.startswith("#")}
    except OSError:
        return set()


def declare(path: Path, reqs: list[str], locked: set[str] = frozenset()) -> list[str]:
    """Add the requirements neither declared nor already locked (a flavor's package, a
    dependency); return those added."""
    import tomlkit

    names, doc, target = declared(path)
    new = [r for r in reqs if name_of(r) and name_of(r) not in names | set(locked)]
    if not new:
        return []
    if target != "requirements":
        with open(target, "a", encoding="utf-8") as f:
            f.write("".join(f"{r}\n" for r in new))
        return new
    if "environment" not in doc:
        doc["environment"] = tomlkit.table()
    env = doc["environment"]
    if "requirements" not in env:
        env["requirements"] = tomlkit.array()
    for r in new:
        env["requirements"].append(r)
    tmp = path.with_name(f".{path.name}.pip")
    tmp.write_text(tomlkit.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)
    return new


def installed_versions() -> dict[str, str]:
    return {name_of(d.metadata["Name"] or ""): d.version for d in importlib.metadata.distributions()}


def pip(line: str) -> None:
    """The ``%pip`` line magic."""
    args = shlex.split(line)
    if not args or args[0] != "install":
        subprocess.run([UV, "pip", *args, "--python", sys.executable], check=False)
        return
    reqs, refused = requirements_in(args[1:])
    if refused:
        print(f"%pip: {' '.join(refused)} cannot be declared in the Gardenfile; name the packages themselves "
              "(and an index under [environment] indexes)", file=sys.stderr)
        return
    before = installed_versions()
    done = subprocess.run([UV, "pip", "install", "--python", sys.executable, *args[1:]], check=False)
    if done.returncode != 0:
        print("%pip: the install failed; the Gardenfile is unchanged", file=sys.stderr)
        return
    importlib.invalidate_caches()
    after = installed_versions()
    changed = sorted(f"{n} {before[n]} -> {after[n]}" for n in before if n in after and after[n] != before[n])
    if changed:
        print(f"%pip: this changed packages of the garden's lock: {', '.join(changed)}; "
              "the next build resolves them again", file=sys.stderr)
    try:
        added = declare(GARDENFILE, reqs, locked_names(LOCK))
    except (OSError, ValueError) as exc:
        print(f"%pip: installed, but {GARDENFILE} could not be updated ({exc}); add {' '.join(reqs)} to "
              "[environment] requirements yourself", file=sys.stderr)
        return
    if added:
        print(f"%pip: added {', '.join(added)} to {GARDENFILE.name}; the next build locks and installs "
              f"{'it' if len(added) == 1 else 'them'}")
    else:
        print(f"%pip: the garden already has {' '.join(reqs)} (declared, or in its lock); "
              f"{GARDENFILE.name} is unchanged")


def load_ipython_extension(ipython) -> None:  # noqa: ANN001 - IPython's InteractiveShell
    ipython.register_magic_function(pip, "line", "pip")
