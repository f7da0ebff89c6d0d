"""The Jupyter prefix: JupyterLab and its dependencies for one Python version, on the host.

Layout of ``<cache>/jupyter/<key>/`` (mounted at `MOUNT` in the container):

    site/                         uv pip install --target: jupyterlab, ipykernel, tomlkit...
    own/share/jupyter/kernels/python3/kernel.json   the garden's kernel (see `kernel_spec`)
    own/python/gardenbuild_pip.py  the kernel's %pip (gardenbuild.jupyter.kernel_pip), loaded by it

The kernel also finds gardenbuild's runtime (``from gardenbuild import garden_pipeline``,
and garden-ai's names) in the host's package, mounted at `HOST_PACKAGE` by the session.
    complete                      written last: a prefix without it is not used

The key covers the Python version, the requirements and this module's layout, so a
change makes a new prefix; the old ones are left for `gardenbuild cache prune`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from gardenbuild.errors import BuildError
from gardenbuild.report import Reporter

MOUNT = "/opt/gardenbuild-jupyter"
REQUIREMENTS = ("jupyterlab>=4.2,<5", "ipykernel>=6.29", "tomlkit>=0.12")
PLATFORM = "x86_64-manylinux_2_28"
LAYOUT = 2
#: Where the host's gardenbuild package is mounted, so the notebook's `from gardenbuild import ...` works.
HOST_PACKAGE = "/opt/gardenbuild-host"
PYTHON_IN_IMAGE = "/opt/garden/venv/bin/python"


def key(python: str) -> str:
    text = json.dumps({"python": python, "requirements": REQUIREMENTS, "platform": PLATFORM, "layout": LAYOUT,
                       "pip": hashlib.sha256(_kernel_pip().read_bytes()).hexdigest()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _kernel_pip() -> Path:
    return Path(__file__).with_name("kernel_pip.py")


def kernel_spec() -> dict:
    """The kernel runs the garden's Python with the garden's packages first on sys.path and
    Jupyter's after them: the notebook sees exactly what the image will hold."""
    boot = (f"import sys; sys.path.append({MOUNT + '/site'!r}); sys.path.append({MOUNT + '/own/python'!r}); "
            f"sys.path.append({HOST_PACKAGE!r}); from gardenbuild.runtime import garden_ai; garden_ai.install(); "
            "from ipykernel import kernelapp; kernelapp.launch_new_instance()")
    return {"argv": [PYTHON_IN_IMAGE, "-c", boot, "-f", "{connection_file}", "--ext=gardenbuild_pip"],
            "display_name": "Python 3 (garden)", "language": "python",
            "metadata": {"debugger": False}}


def ensure(python: str, cache_root: Path, reporter: Reporter) -> Path:
    """The prefix for ``python`` (``3.11``), installed if it is not there yet."""
    from gardenbuild.backends.deps import find_uv

    root = cache_root / "jupyter" / key(python)
    if (root / "complete").is_file():
        return root
    reporter.step(f"installing JupyterLab for Python {python} (once; it stays out of the garden's image)")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        done = subprocess.run([find_uv(), "pip", "install", "--no-config", "--quiet", "--target", str(tmp / "site"),
                               "--python-version", python, "--python-platform", PLATFORM, "--only-binary", ":all:",
                               *REQUIREMENTS], capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"JupyterLab could not be installed for Python {python}: "
                             f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'uv failed'}",
                             hint="it is fetched from PyPI once: check this machine reaches it")
        kernels = tmp / "own" / "share" / "jupyter" / "kernels" / "python3"
        kernels.mkdir(parents=True)
        (kernels / "kernel.json").write_text(json.dumps(kernel_spec(), indent=1))
        (tmp / "own" / "python").mkdir()
        shutil.copyfile(_kernel_pip(), tmp / "own" / "python" / "gardenbuild_pip.py")
        (tmp / "complete").write_text("")
        try:
            os.rename(tmp, root)
        except OSError:  # another process made it meanwhile
            if not (root / "complete").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
