"""The in-image runtime: notebook cells to Python, ``execute`` (build a session),
``call`` (run a pipeline from it) and the marker protocol between them and the host.

Functional tests run the real ``python -m gardenbuild.runtime.*`` commands on the host
Python against the fixture notebooks in ``fixtures/notebooks`` (copied to a temporary
folder first, since a notebook runs with its own folder as working directory).
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gardenbuild.runtime.call import compare, to_json
from gardenbuild.runtime.cells import NotebookError, UnsupportedMagic, pip_requirements, read_notebook, to_python
from gardenbuild.runtime.protocol import format_marker, parse_markers

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
RUNTIME = Path(__file__).parent.parent / "gardenbuild" / "runtime"

SIMPLE_PIPELINES = [
    {
        "name": "double",
        "function": "double",
        "description": "Doubles numbers.",
        "tests": [{"input": {"x": [1, 2]}, "expected": [2, 4]}],
    },
    {
        "name": "norm",
        "function": "norm",
        "tests": [
            {"input": {"v": [3, 4]}, "expected": 5.4, "tolerance": 0.2},
            {"input": [[3, 4]], "expected": 5.4, "tolerance": 0.05},
        ],
    },
    {"name": "summary", "function": "summary"},
    {"name": "tripled", "function": "tripled"},
    {"name": "boom", "function": "explode", "tests": [{"input": {}, "expected": 1}]},
]


# --------------------------------------------------------------------------- helpers


def run(
    module: str, *args: str, stdin: str = "", cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"gardenbuild.runtime.{module}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def execute(
    root: Path, notebook: str, pipelines: list[dict[str, Any]], out: str = "out", env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], Path]:
    config = root / f"{out}.config.json"
    config.write_text(json.dumps({"garden": "demo-garden", "pipelines": pipelines}))
    proc = run("execute", "--notebook", f"nb/{notebook}", "--config", config.name, "--out", out, cwd=root, env=env)
    return proc, root / out


def call(out: Path, *args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``call`` with the session in ``out``, by default from where ``execute`` ran
    (as in an image, where both run in its WORKDIR)."""
    return run("call", *args, "--session", str(out / "session.pkl"), stdin=stdin, cwd=cwd or out.parent)


def only_error(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    results, errors = parse_markers(proc.stderr)
    assert not results and len(errors) == 1, proc.stderr
    return errors[0]


def only_result(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout  # nothing but the marker reaches stdout
    results, errors = parse_markers(proc.stdout)
    assert len(results) == 1 and not errors
    return results[0]


def write_notebook(path: Path, *sources: str) -> None:
    cells = [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": s} for s in sources
    ]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES, tmp_path / "nb")
    return tmp_path


@pytest.fixture(scope="module")
def simple(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """simple.ipynb built once for all the call tests; returns the output folder."""
    root = tmp_path_factory.mktemp("simple")
    shutil.copytree(FIXTURES, root / "nb")
    proc, out = execute(root, "simple.ipynb", SIMPLE_PIPELINES)
    assert proc.returncode == 0, proc.stderr
    return out


# --------------------------------------------------------------------------- cells


def test_read_notebook_numbers_cells_among_all_cells() -> None:
    cells = read_notebook(FIXTURES / "zerodiv.ipynb")
    assert [(c.index, c.code_index, c.execution_count) for c in cells] == [(1, 1, 1), (3, 2, 2), (4, 3, 3)]
    assert cells[1].source == "y = 0\nratio = x / y\nprint('never printed')"


def test_read_notebook_rejects_other_formats(tmp_path: Path) -> None:
    (tmp_path / "old.ipynb").write_text(json.dumps({"cells": [], "nbformat": 3}))
    (tmp_path / "bad.ipynb").write_text("{not json")
    (tmp_path / "cells.ipynb").write_text(json.dumps({"cells": [{"source": "x"}], "nbformat": 4}))
    (tmp_path / "binary.ipynb").write_bytes(b"\xff\xfe\x00")
    cases = {"old.ipynb": "uses nbformat 3; only nbformat 4 is supported (re-save it in Jupyter)",
             "bad.ipynb": "is not valid JSON (line 1: Expecting property name enclosed in double quotes); "
                          "is it really a .ipynb?",
             "cells.ipynb": "cell 1 has no cell_type",
             "binary.ipynb": "is not a text file"}
    for name, reason in cases.items():
        with pytest.raises(NotebookError) as info:
            read_notebook(tmp_path / name)
        assert (info.value.reason, str(info.value)) == (reason, f"{tmp_path / name} {reason}")


SUB = "__import__('subprocess')"


@pytest.mark.parametrize(
    ("source", "python"),
    [
        ("%pip install -q numpy", "pass  # %pip install -q numpy  (installed at image build time)"),
        ("!pip install numpy", "pass  # !pip install numpy  (installed at image build time)"),
        (
            "!{sys.executable} -m pip install x",
            "pass  # !{sys.executable} -m pip install x  (installed at image build time)",
        ),
        ("%conda install x", "pass  # %conda install x  (installed at image build time)"),
        ("%matplotlib inline", "pass  # %matplotlib inline  (no effect outside IPython)"),
        ("if x:\n    !ls -l", f"if x:\n    {SUB}.run('ls -l', shell=True, check=True)"),
        ("!echo {n}", f"{SUB}.run(f'echo {{n}}', shell=True, check=True)"),
        ("!awk '{print $1}' f", f"{SUB}.run(\"awk '{{print $1}}' f\", shell=True, check=True)"),
        (
            "files = !ls",
            f"files = {SUB}.run('ls', shell=True, check=True, stdout={SUB}.PIPE, universal_newlines=True).stdout.splitlines()",
        ),
        ("%time y = f(2)", "y = f(2)"),
        ("%timeit -n 10 -r3 f(2)", "f(2)"),
        (
            "%%time\nx = 1\n%load_ext foo",
            "pass  # %%time  (body runs once)\nx = 1\npass  # %load_ext foo  (no effect outside IPython)",
        ),
        (
            "%%capture\n%pip install a",
            "pass  # %%capture  (body runs once)\npass  # %pip install a  (installed at image build time)",
        ),
        ("%%bash\necho hi", f"{SUB}.run(['bash'], input='echo hi\\n', universal_newlines=True, check=True)\n# echo hi"),
        ("%env MODE=fast", "__import__('os').environ['MODE'] = 'fast'"),
        ("np.array?", "pass  # np.array?  (help, no effect outside IPython)"),
        ("s = '''\n%not_a_magic\n!nor this\n'''", "s = '''\n%not_a_magic\n!nor this\n'''"),
        ("total = (1 +\n  2)\nx != 3", "total = (1 +\n  2)\nx != 3"),
    ],
)
def test_to_python(source: str, python: str) -> None:
    assert to_python(source) == python
    assert len(python.split("\n")) == len(source.split("\n"))  # line numbers survive


def test_writefile_writes_body(tmp_path: Path) -> None:
    code = to_python("%%writefile out.txt\nalpha\nbeta")
    exec(code.replace("'out.txt'", repr(str(tmp_path / "out.txt"))), {})
    assert (tmp_path / "out.txt").read_text() == "alpha\nbeta\n"


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("x = 1\n%store x", 2, "cell 4, line 2: %store: no plain-Python equivalent"),
        ("x = 1\n%%time\nx", 2, "cell 4, line 2: %%time: cell magics must be on the first line"),
        ("%%capture out\nx", 1, "cell 4, line 1: %%capture: capturing into a variable is not supported"),
        ("%%time\ny = %who", 2, "cell 4, line 2: %who: assigning the result of this magic is not supported"),
    ],
)
def test_unsupported_magic_names_cell_and_line(source: str, line: int, message: str) -> None:
    with pytest.raises(UnsupportedMagic) as info:
        to_python(source, cell=4)
    assert info.value.cell == 4 and info.value.line == line
    assert str(info.value).startswith(message)


def test_pip_requirements() -> None:
    source = "\n".join(
        [
            "%pip install -q -U \"numpy>=2\" 'pandas<3' -r req.txt --index-url https://example.org/simple scipy==1.*  # note",
            "!pip install git+https://example.org/x.git#egg=x",
            "!{sys.executable} -m pip install --quiet requests numpy>=2",
            "pip install automagic-pkg",
            'text = """',
            "%pip install not-a-requirement",
            '"""',
            "!pip freeze",
        ]
    )
    assert pip_requirements(source) == [
        "numpy>=2",
        "pandas<3",
        "-r req.txt",
        "--index-url https://example.org/simple",  # a package source: the garden's too
        "scipy==1.*",
        "git+https://example.org/x.git#egg=x",
        "requests",
        "automagic-pkg",
    ]
    assert pip_requirements("%%capture\n%pip install a b") == ["a", "b"]
    assert pip_requirements("%%bash\npip install a") == []


def test_magics_fixture_requirements() -> None:
    found = [spec for cell in read_notebook(FIXTURES / "magics.ipynb") for spec in pip_requirements(cell.source)]
    assert found == ["numpy>=2", "requests<3", "tomli"]


# --------------------------------------------------------------------------- protocol


def test_parse_markers_ignores_noise() -> None:
    text = "\n".join(
        [
            "user output",
            "partial line" + format_marker("GARDENBUILD-RESULT", {"result": [1, 2]}),
            format_marker("GARDENBUILD-ERROR", {"kind": "cell", "source_line": 'print("GARDENBUILD-ERROR {")'}),
            "GARDENBUILD-ERROR not json",
            "GARDENBUILD-RESULT {broken",
        ]
    )
    results, errors = parse_markers(text)
    assert results == [{"result": [1, 2]}]
    assert errors == [{"kind": "cell", "source_line": 'print("GARDENBUILD-ERROR {")'}]


END_PROCESS = """
import atexit, sys, threading, time
from gardenbuild.runtime.protocol import end_process

class Loud:
    def __init__(self, path):
        self.path = path

    def __del__(self, open=open):  # runs in a normal interpreter teardown only
        with open(self.path, "w") as f:
            f.write("torn down")

keep = Loud(sys.argv[1] + "/teardown")
unclosed = open(sys.argv[1] + "/unclosed.txt", "w")
unclosed.write("bytes still in the buffer")
atexit.register(lambda: open(sys.argv[1] + "/atexit", "w").write("ran"))
if sys.argv[2] == "thread":
    threading.Thread(target=lambda: (time.sleep(0.3), open(sys.argv[1] + "/thread", "w").write("done"))).start()
print("answer", end="")
end_process(3)
"""


@pytest.mark.parametrize("thread", [False, True])
def test_end_process_skips_teardown_but_keeps_what_an_exit_keeps(tmp_path: Path, thread: bool) -> None:
    proc = subprocess.run([sys.executable, "-c", END_PROCESS, str(tmp_path), "thread" if thread else "-"],
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (3, "answer"), proc.stderr
    assert (tmp_path / "unclosed.txt").read_text() == "bytes still in the buffer"
    assert (tmp_path / "atexit").read_text() == "ran"
    # With a thread still running it is a normal exit: the thread finishes, teardown runs.
    assert (tmp_path / "thread").exists() is thread
    assert (tmp_path / "teardown").exists() is thread


# --------------------------------------------------------------------------- execute


def test_execute_writes_session_and_metadata(simple: Path) -> None:
    metadata = json.loads((simple / "metadata.json").read_text())
    assert metadata["garden"] == "demo-garden"
    assert metadata["notebook"] == "simple.ipynb"
    assert metadata["notebook_path"] == "nb/simple.ipynb"  # as given, relative to where execute ran
    assert metadata["python"] == ".".join(map(str, sys.version_info[:3]))
    assert metadata["decorated"] == ["double", "explode", "norm", "summary", "tripled"]
    double, norm = metadata["pipelines"][:2]
    assert double == {
        "name": "double",
        "function": "double",
        "decorator": {"name": "double"},
        "signature": "(x: list[float]) -> list[float]",
        "parameters": [{"name": "x", "kind": "positional_or_keyword", "annotation": "list[float]", "required": True}],
        "return_annotation": "list[float]",
        "docstring": "Multiply every number by SCALE.",
        "description": "Doubles numbers.",
    }
    assert "tests" not in json.dumps(metadata)  # the image knows no test case: they change without it
    assert norm["description"] == "Euclidean norm plus the offset read at build time."  # from the decorator
    assert norm["parameters"][1] == {
        "name": "squared",
        "kind": "positional_or_keyword",
        "annotation": "bool",
        "required": False,
        "default": False,
        "default_repr": "False",
    }
    assert metadata["pipelines"][4]["function"] == "explode"
    text = (simple / "metadata.json").read_text()
    assert text == json.dumps(metadata, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_execute_reports_progress(root: Path) -> None:
    proc, _ = execute(root, "simple.ipynb", SIMPLE_PIPELINES)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:5] == [
        "gardenbuild: cell 1/5 (notebook cell 2)",
        "gardenbuild: cell 2/5 (notebook cell 3)",
        "gardenbuild: cell 3/5 (notebook cell 5)",
        "gardenbuild: cell 4/5 (notebook cell 6)",
        "gardenbuild: cell 5/5 (notebook cell 7)",
    ]
    assert lines[5].startswith("doubling 2 numbers" + "gardenbuild: ran 5 code cells in ")  # the notebook's print
    assert lines[6].startswith('GARDENBUILD-RESULT {"executed_ipynb":')  # the notebook with its outputs
    assert lines[7].startswith("gardenbuild: saved session (")


def test_session_bytes_are_deterministic(root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    _, first = execute(root, "simple.ipynb", SIMPLE_PIPELINES, out="first")
    # Same notebook from another folder: no path may leak into the session.
    other = tmp_path_factory.mktemp("elsewhere")
    shutil.copytree(FIXTURES, other / "nb")
    _, second = execute(other, "simple.ipynb", SIMPLE_PIPELINES, out="second")
    for name in ("session.pkl", "metadata.json"):
        assert sha256(first / name) == sha256(second / name), name
    # The set in the notebook orders by string hashes: another seed, other bytes.
    _, seeded = execute(root, "simple.ipynb", SIMPLE_PIPELINES, out="seeded", env={"PYTHONHASHSEED": "7"})
    assert json.loads((seeded / "metadata.json").read_text())["hash_seed"] == "7"


def test_cell_error_reports_cell_and_line(root: Path) -> None:
    proc, out = execute(root, "zerodiv.ipynb", [{"name": "never", "function": "never"}])
    assert proc.returncode == 3
    error = only_error(proc)
    traceback = error.pop("traceback")
    assert error == {
        "kind": "cell",
        "notebook": "zerodiv.ipynb",
        "cell": 3,
        "code_cell": 2,
        "execution_count": 2,
        "line": 2,
        "source_line": "ratio = x / y",
        "exception": "ZeroDivisionError: division by zero",
    }
    assert traceback.startswith(
        'Traceback (most recent call last):\n  File "<zerodiv.ipynb cell 3>", line 2, in <module>\n'
    )
    assert "runtime" not in traceback  # only the notebook's frames
    printed = "\n".join(line for line in proc.stdout.splitlines() if "GARDENBUILD-RESULT" not in line)
    assert "never printed" not in printed  # (the executed notebook's marker carries the sources)
    (executed,) = [r["executed_ipynb"] for r in parse_markers(proc.stdout)[0] if "executed_ipynb" in r]
    cells = [c for c in json.loads(executed)["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in cells] == [1, 2, None]  # the failing cell ran, the last did not
    assert not (out / "session.pkl").exists()


def test_error_in_function_from_earlier_cell(root: Path) -> None:
    write_notebook(root / "nb" / "deep.ipynb", "def f(d):\n    return 1 / d", "a = 1\nb = f(0)")
    proc, _ = execute(root, "deep.ipynb", [])
    error = only_error(proc)
    assert (error["cell"], error["line"], error["source_line"]) == (2, 2, "b = f(0)")
    assert 'File "<deep.ipynb cell 1>", line 2, in f\n    return 1 / d' in error["traceback"]


def test_syntax_and_magic_errors_fail_before_running(root: Path) -> None:
    write_notebook(root / "nb" / "syntax.ipynb", "print('ran')", "x = 1\nif x\n    pass")
    proc, _ = execute(root, "syntax.ipynb", [])
    error = only_error(proc)
    assert (error["cell"], error["line"], error["source_line"]) == (2, 2, "if x")
    assert error["exception"] == "SyntaxError: expected ':'" if sys.version_info >= (3, 10) else True
    assert "ran" not in proc.stdout

    write_notebook(root / "nb" / "magic.ipynb", "print('ran')", "x = 1\n%store x")
    proc, _ = execute(root, "magic.ipynb", [])
    error = only_error(proc)
    assert (error["kind"], error["cell"], error["line"], error["source_line"]) == ("cell", 2, 2, "%store x")
    assert error["exception"].startswith("UnsupportedMagic: cell 2, line 2: %store: no plain-Python equivalent")
    assert "ran" not in proc.stdout


def test_magics_notebook(root: Path) -> None:
    proc, out = execute(root, "magics.ipynb", [{"name": "shout", "function": "shout"}])
    assert proc.returncode == 0, proc.stderr
    assert "hello-from-shell\n" in proc.stdout and "from-bash\n" in proc.stdout
    assert (root / "nb" / "words.txt").read_text() == "alpha\nbeta\n"
    result = only_result(call(out, "shout", stdin='{"word": "hi"}'))
    assert result["result"] == "CAPTURED HI (2 words)"


def test_top_level_await(root: Path) -> None:
    write_notebook(
        root / "nb" / "aw.ipynb",
        "import asyncio\nfrom gardenbuild import garden_pipeline",
        "x = await asyncio.sleep(0, result=41)",
        "@garden_pipeline\ndef f():\n    return x + 1",
    )
    proc, out = execute(root, "aw.ipynb", [{"name": "f", "function": "f"}])
    assert proc.returncode == 0, proc.stderr
    assert only_result(call(out, "f"))["result"] == 42


def test_unpicklable_variable_is_named(root: Path) -> None:
    proc, out = execute(root, "unpicklable.ipynb", [{"name": "clip", "function": "clip"}])
    assert proc.returncode == 3
    assert only_error(proc) == {
        "kind": "pickle",
        "notebook": "unpicklable.ipynb",
        "variables": [{"name": "conn", "type": "socket.socket", "error": "TypeError: cannot pickle 'socket' object"}],
        "exception": "TypeError: cannot pickle 'socket' object",
        "message": "the notebook's variable 'conn' (a socket.socket) cannot be saved with dill: "
        "TypeError: cannot pickle 'socket' object",
        "hint": "delete it in a last cell (`del conn`); if a pipeline needs it, create it inside the pipeline "
        "function instead of at the top level",
    }
    assert not (out / "session.pkl").exists() and not (out / "session.pkl.tmp").exists()


def test_pipeline_problems_are_all_reported(root: Path) -> None:
    proc, _ = execute(
        root, "undecorated.ipynb", [{"name": "predict", "function": "predict"}, {"name": "other", "function": "other"}]
    )
    assert proc.returncode == 3
    _, errors = parse_markers(proc.stderr)
    assert [e["message"] for e in errors] == [
        "pipeline 'predict' names function 'predict', which the notebook defines but does not decorate with @garden_pipeline",
        "pipeline 'other' names function 'other', which the notebook does not define "
        "(the notebook defines no @garden_pipeline functions)",
    ]
    assert errors[0] == {
        "kind": "pipeline",
        "notebook": "undecorated.ipynb",
        "pipeline": "predict",
        "function": "predict",
        "message": errors[0]["message"],
    }


def test_missing_pipeline_suggests_a_decorated_one(root: Path) -> None:
    proc, _ = execute(
        root, "simple.ipynb", [{"name": "double", "function": "dubble"}, {"name": "s", "function": "SCALE"}]
    )
    _, errors = parse_markers(proc.stderr)
    assert [e["message"] for e in errors] == [
        "pipeline 'double' names function 'dubble', which the notebook does not define; did you mean 'double'? "
        "@garden_pipeline functions: double, explode, norm, summary, tripled",
        "pipeline 's' names function 'SCALE', but 'SCALE' in the notebook is a float, not a function",
    ]


def test_bad_config_is_a_usage_error(root: Path) -> None:
    (root / "bad.json").write_text('{"pipelines": []}')
    proc = run("execute", "--notebook", "nb/simple.ipynb", "--config", "bad.json", "--out", "out", cwd=root)
    assert proc.returncode == 2
    assert only_error(proc)["kind"] == "usage"


# --------------------------------------------------------------------------- call


def test_call_round_trip(simple: Path) -> None:
    proc = call(simple, "double", stdin='{"x": [1, 2.5]}')
    result = only_result(proc)
    assert result["pipeline"] == "double" and result["result"] == [2.0, 5.0]
    assert set(result["timings"]) == {"load_s", "call_s", "total_s"}
    assert "doubling 2 numbers" in proc.stderr  # the pipeline's print, kept off stdout


def test_call_arguments_and_conversions(simple: Path, tmp_path: Path) -> None:
    assert only_result(call(simple, "norm", stdin='{"v": [3, 4]}'))["result"] == 5.5  # global from a data file
    assert only_result(call(simple, "norm", stdin="[[3, 4], true]"))["result"] == 25.5  # array: positional
    # tuple -> list, NaN -> null, notebook globals
    summary = only_result(call(simple, "summary", stdin='{"x": [3, 1, 2]}'))["result"]
    assert summary == [1, 3, None, ["alpha", "beta", "delta", "epsilon", "gamma"]]
    (tmp_path / "in.json").write_text('{"x": 2}')
    # a module beside the notebook, saved by reference, imports from the notebook's folder
    proc = call(simple, "tripled", "--input-file", str(tmp_path / "in.json"))
    assert only_result(proc)["result"] == 6
    proc = call(simple, "tripled", "--workdir", str(simple.parent / "nb"), stdin="[5]", cwd=tmp_path)
    assert only_result(proc)["result"] == 15


def test_call_outside_the_notebook_folder(simple: Path, tmp_path: Path) -> None:
    error = only_error(call(simple, "double", stdin="{}", cwd=tmp_path))
    assert error["exception"] == "ModuleNotFoundError: No module named 'simple_helpers'"
    assert error["hint"] == (
        "the notebook imported 'simple_helpers': install it in the image, or, if it is a file beside "
        "the notebook, run from the notebook's folder (--workdir)"
    )


def test_call_pipeline_exception_names_the_cell(simple: Path) -> None:
    proc = call(simple, "boom", stdin="{}")
    assert proc.returncode == 3
    error = only_error(proc)
    assert error["kind"] == "pipeline-exception" and error["pipeline"] == "boom"
    assert error["exception"] == "ZeroDivisionError: float division by zero"
    # Caret lines (^^^, ~~^~~) differ between Python versions: compare the rest.
    lines = [line for line in error["traceback"].splitlines() if line.strip(" ^~")]
    assert lines == [
        "Traceback (most recent call last):",
        '  File "<simple.ipynb cell 6>", line 8, in explode',
        "    return _helper(d)",
        '  File "<simple.ipynb cell 6>", line 2, in _helper',
        "    return 1 / d",
        "ZeroDivisionError: float division by zero",
    ]


@pytest.mark.parametrize(
    ("args", "stdin", "kind", "message"),
    [
        (
            ["double"],
            '{"y": 1}',
            "input",
            "pipeline 'double' takes (x: list[float]) -> list[float]: unexpected 'y'; missing 'x'",
        ),
        (
            ["double"],
            "[1, 2]",
            "input",
            "pipeline 'double' takes (x: list[float]) -> list[float]: too many positional arguments",
        ),
        (["double"], "{oops", "input", "input from stdin is not valid JSON: "),
        (
            ["double"],
            "3",
            "input",
            "input must be a JSON object (keyword arguments) or array (positional arguments), not int",
        ),
        (
            ["nope"],
            "{}",
            "usage",
            "no pipeline 'nope' in this garden (pipelines: boom, double, norm, summary, tripled)",
        ),
    ],
)
def test_call_bad_input(simple: Path, args: list[str], stdin: str, kind: str, message: str) -> None:
    proc = call(simple, *args, stdin=stdin)
    assert proc.returncode == 2 and proc.stdout == ""
    error = only_error(proc)
    assert error["kind"] == kind and error["message"].startswith(message)


def test_call_missing_session(tmp_path: Path) -> None:
    proc = call(tmp_path, "double", stdin="{}")
    assert proc.returncode == 3
    error = only_error(proc)
    assert error["kind"] == "load" and error["exception"].startswith("FileNotFoundError")


def cases_of(pipelines: list[dict[str, Any]]) -> str:
    """The test cases of `pipelines`, as the host hands them to ``call --test``."""
    return json.dumps([{"pipeline": p["name"], "index": i, **case}
                       for p in pipelines for i, case in enumerate(p.get("tests", []))])


def test_test_mode(simple: Path) -> None:
    proc = call(simple, "--test", stdin=cases_of(SIMPLE_PIPELINES))
    assert proc.returncode == 1  # one tolerance too tight, one pipeline raising
    results, _ = parse_markers(proc.stdout)
    report = results[0]
    assert (report["passed"], report["failed"]) == (2, 2)
    cases = [(c["pipeline"], c["index"], c["passed"], c["actual"]) for c in report["cases"]]
    assert cases == [
        ("double", 0, True, [2.0, 4.0]),
        ("norm", 0, True, 5.5),
        ("norm", 1, False, 5.5),
        ("boom", 0, False, None),
    ]
    assert report["cases"][2]["message"] == "at result: expected 5.4, got 5.5 (off by 0.1, tolerance 0.05)"
    assert report["cases"][3]["message"].startswith(
        "pipeline 'boom' raised ZeroDivisionError: float division by zero\n"
    )
    assert report["cases"][0]["expected"] == [2, 4] and report["cases"][0]["message"] is None
    assert all(c["seconds"] >= 0 for c in report["cases"])


def test_test_mode_all_passing(root: Path) -> None:
    proc, out = execute(root, "simple.ipynb", SIMPLE_PIPELINES[:1])
    proc = call(out, "--test", stdin=cases_of(SIMPLE_PIPELINES[:1]))
    assert proc.returncode == 0
    assert only_result(proc)["passed"] == 1


def test_arrays_and_frames_arrive_as_their_hints_ask(root: Path) -> None:
    pytest.importorskip("numpy")
    pytest.importorskip("pandas")
    write_notebook(
        root / "nb" / "arrays.ipynb",
        "import numpy as np\nimport numpy.typing as npt\nimport pandas as pd\nfrom typing import Optional\n"
        "from gardenbuild import garden_pipeline",
        "@garden_pipeline\ndef describe(m: np.ndarray, w: npt.NDArray[np.float32], table: pd.DataFrame,\n"
        "             s: pd.Series, extra: Optional[np.ndarray] = None) -> dict:\n"
        "    return {'m': [type(m).__name__, str(m.dtype), list(m.shape)], 'w': str(w.dtype),\n"
        "            'table': [type(table).__name__, list(table.columns), len(table)], 'total': float(table['x'].sum()),\n"
        "            's': type(s).__name__, 'extra': extra is None, 'mean': m.mean()}",
    )
    proc, out = execute(root, "arrays.ipynb", [{"name": "describe", "function": "describe"}])
    assert proc.returncode == 0, proc.stderr
    records = {"m": [[1, 2], [3, 4]], "w": [1, 2], "table": [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}], "s": [1, 2]}
    result = only_result(call(out, "describe", stdin=json.dumps(records)))["result"]
    assert result == {"m": ["ndarray", "int64", [2, 2]], "w": "float32", "table": ["DataFrame", ["x", "y"], 2],
                      "total": 3.0, "s": "Series", "extra": True, "mean": 2.5}
    columns = dict(records, table={"x": [5, 6, 7], "y": ["a", "b", "c"]})
    assert only_result(call(out, "describe", stdin=json.dumps(columns)))["result"]["table"] == ["DataFrame", ["x", "y"], 3]
    wrong = only_error(call(out, "describe", stdin=json.dumps(dict(records, table=[1, 2]))))
    assert wrong["message"] == ("pipeline 'describe': parameter table must be a table for DataFrame: a list of row "
                                "objects or an object of column lists, not a list")


def test_numpy_results_without_numpy_in_the_runtime(root: Path) -> None:
    pytest.importorskip("numpy")
    write_notebook(
        root / "nb" / "np.ipynb",
        "import numpy as np\nfrom gardenbuild import garden_pipeline\nW = np.linspace(0, 1, 3)",
        "@garden_pipeline\ndef f(x: float):\n    return {'w': W * x, 'f32': np.float32(1.5), 'i': np.int64(3), 'nan': np.array([np.nan])}",
    )
    proc, out = execute(root, "np.ipynb", [{"name": "f", "function": "f"}])
    assert proc.returncode == 0, proc.stderr
    _, again = execute(root, "np.ipynb", [{"name": "f", "function": "f"}], out="again")
    assert sha256(out / "session.pkl") == sha256(again / "session.pkl")
    result = only_result(call(out, "f", stdin='{"x": 2}'))["result"]
    assert result == {"w": [0.0, 1.0, 2.0], "f32": 1.5, "i": 3, "nan": [None]}


# --------------------------------------------------------------------------- units


class FakeArray:
    """Duck-typed like numpy.ndarray: only .tolist()."""

    def __init__(self, values: list[Any]) -> None:
        self.values = values

    def tolist(self) -> list[Any]:
        return self.values


class FakeScalar:
    def item(self) -> float:
        return float("inf")


def test_to_json() -> None:
    value = {"a": (1, FakeArray([1.5, float("nan")])), 2: {FakeScalar()}, "s": frozenset({"b", "a"})}
    assert to_json(value) == {"a": [1, [1.5, None]], "2": [None], "s": ["a", "b"]}
    with pytest.raises(TypeError, match=r"result\['a'\]\[0\] is bytes"):
        to_json({"a": [b"x"]})
    with pytest.raises(TypeError, match=r"result is a object, which has no JSON form"):
        to_json(object())


@pytest.mark.parametrize(
    ("expected", "actual", "tolerance", "message"),
    [
        ([1, {"a": 2.0}], [1.0, {"a": 2.05}], 0.1, None),
        (
            [1, {"a": 2.0}],
            [1.0, {"a": 2.5}],
            0.1,
            "at result[1]['a']: expected 2.0, got 2.5 (off by 0.5, tolerance 0.1)",
        ),
        ([1, 2], [1], 0, "at result: expected a list of length 2, got length 1"),
        ({"a": 1}, {"b": 1}, 0, "at result: missing keys ['a']; unexpected keys ['b']"),
        ("x", "x", 0, None),
        ("x", "y", 0, 'at result: expected "x", got "y"'),
        (True, 1, 0, "at result: expected true, got 1"),
        (None, None, 0, None),
        (1, None, 0, "at result: expected the number 1, got null"),
    ],
)
def test_compare(expected: Any, actual: Any, tolerance: float, message: str | None) -> None:
    assert compare(expected, actual, tolerance) == message


# --------------------------------------------------------------------------- the image contract


def test_runtime_imports_only_stdlib_and_dill() -> None:
    allowed = set(sys.stdlib_module_names) | {"dill", "gardenbuild", "__future__"}
    for path in RUNTIME.glob("*.py"):
        tree = ast.parse(path.read_text(), feature_version=(3, 10))  # also: no 3.11+ syntax
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
                if name.startswith("gardenbuild."):
                    assert name.startswith("gardenbuild.runtime"), f"{path.name} imports {name}"


def test_runtime_runs_from_an_image_layout(root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Only gardenbuild/__init__.py and gardenbuild/runtime/*.py on the path, as in an image."""
    image = tmp_path_factory.mktemp("image")
    (image / "gardenbuild" / "runtime").mkdir(parents=True)
    shutil.copy(RUNTIME.parent / "__init__.py", image / "gardenbuild")
    for path in RUNTIME.glob("*.py"):
        shutil.copy(path, image / "gardenbuild" / "runtime")
    env = {"PYTHONPATH": str(image)}
    probe = (
        "import sys, gardenbuild.runtime.call as c, gardenbuild.runtime.execute, gardenbuild.runtime.cells;"
        "print(c.__file__); print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('pydantic', 'jinja2', 'networkx', 'numpy', 'dill') or m.startswith('gardenbuild.') and"
        " not m.startswith('gardenbuild.runtime')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ, **env}, cwd=image
    )
    assert proc.stdout.splitlines() == [str(image / "gardenbuild" / "runtime" / "call.py"), "[]"], proc.stderr
    proc, out = execute(root, "simple.ipynb", SIMPLE_PIPELINES[:1], env=env)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "gardenbuild.runtime.call", "double", "--session", str(out / "session.pkl")],
        input='{"x": [4]}',
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=root,
    )
    assert only_result(proc)["result"] == [8.0]
    assert not math.isnan(only_result(proc)["timings"]["load_s"])


def test_a_long_cell_says_it_is_still_running(root: Path) -> None:
    write_notebook(root / "nb" / "slow.ipynb", "import time\nfrom gardenbuild import garden_pipeline",
                   "time.sleep(2.5)", "@garden_pipeline\ndef f():\n    return 1")
    proc, _ = execute(root, "slow.ipynb", [{"name": "f", "function": "f"}], env={"GARDENBUILD_HEARTBEAT_SECONDS": "1"})
    assert proc.returncode == 0, proc.stderr
    beats = [line for line in proc.stdout.splitlines() if "still running" in line]
    assert beats[:2] == ["gardenbuild: notebook cell 2 still running (1 s)", "gardenbuild: notebook cell 2 still running (2 s)"]
