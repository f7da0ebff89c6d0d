"""Where a build's time goes: phases from a handler's own timing and from buildah's lines."""

from __future__ import annotations

from gardenbuild.engine.timing import BudClock, Phases, short, table


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_bud_is_split_at_its_step_and_commit_lines():
    clock = Clock()
    phases = Phases(clock)
    seen = []
    bud = BudClock(phases, seen.append)
    for at, line in [(0.4, "STEP 1/3: FROM localhost/env:1"), (0.5, "STEP 2/3: COPY garden/ /garden/"),
                     (0.6, "some output of the copy"), (0.9, "STEP 3/3: RUN [\"python\", \"-m\", \"x\"]"),
                     (4.0, "notebook output"), (4.2, "COMMIT"), (4.3, "Getting image source signatures"),
                     (4.5, "--> 0123abcd")]:
        clock.now = at
        bud(line)
    clock.now = 5.0
    bud.finish()
    assert [(p["name"], p["seconds"]) for p in phases.as_json()] == [
        ("buildah start", 0.4), ("STEP 1/3 FROM localhost/env:1", 0.1), ("STEP 2/3 COPY garden/ /garden/", 0.4),
        ('STEP 3/3 RUN ["python", "-m", "x"]', 3.3), ("commit", 0.8)]
    assert len(seen) == 8  # every line is passed on


def test_a_bud_that_printed_nothing_is_one_phase_and_a_phase_times_its_block():
    clock = Clock()
    phases = Phases(clock)
    bud = BudClock(phases)
    clock.now = 2.5
    bud.finish()
    with phases.phase("copy"):
        clock.now = 3.0
    assert phases.as_json() == [{"name": "buildah", "seconds": 2.5}, {"name": "copy", "seconds": 0.5}]


def test_long_instructions_are_shortened_and_the_table_reads_like_buildkit():
    assert short("RUN " + "x " * 100, width=20) == "RUN x x x x x x x x…"
    lines = table([{"id": "resolve", "cached": True, "seconds": 0.0},
                   {"id": "test", "cached": False, "seconds": 1.25, "phases": [{"name": "session load", "seconds": 0.7}]}],
                  top=[{"name": "steps", "seconds": 1.3}])
    assert lines == ["      1.30 s  steps", "#1 resolve  CACHED", "#2 test  1.25 s", "      0.70 s  session load"]


def test_the_tests_phases_split_the_containers_wall_time_by_what_the_runtime_measured():
    import time as _time

    from gardenbuild.backends import RunResult
    from gardenbuild.engine.call import run_tests
    from gardenbuild.runtime.protocol import RESULT, format_marker

    class Backend:
        def run(self, image, argv, *, stdin=None, limits=None, **_):
            _time.sleep(0.3)  # the container's wall time, beyond what the runtime saw
            line = format_marker(RESULT, {"cases": [{"pipeline": "p", "index": 0, "passed": True}],
                                          "timings": {"load_s": 0.05, "total_s": 0.08}})
            return RunResult(0, line.encode() + b"\n", b"", 0.3)

    phases = Phases()
    cases = run_tests(Backend(), "img", [{"pipeline": "p"}], phases=phases)
    assert cases == [{"pipeline": "p", "index": 0, "passed": True}]
    got = {p["name"]: p["seconds"] for p in phases.as_json()}
    assert got["session load"] == 0.05 and got["1 test case(s)"] == 0.03
    assert 0.2 <= got["container start and stop, Python start"] <= 1.0


def test_what_the_tests_wrote_is_named_file_by_file(tmp_path):
    from gardenbuild.runtime.selftest import _state, changed

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "kept.csv").write_text("1\n")
    (tmp_path / "scratch").mkdir()
    before = _state([str(tmp_path)], str(tmp_path / "scratch"))
    (tmp_path / "data" / "new.txt").write_text("x")
    (tmp_path / "data" / "kept.csv").write_text("1\n2\n")
    (tmp_path / "scratch" / "ignored").write_text("mpl cache")
    (tmp_path / "made").mkdir()
    after = _state([str(tmp_path)], str(tmp_path / "scratch"))
    assert changed(before, after) == [str(tmp_path / p) for p in ("data/kept.csv", "data/new.txt", "made")]
    assert changed(before, before) == []


def test_the_tests_results_from_the_notebooks_step_are_read_only_when_they_ran_whole():
    from gardenbuild.engine.builder import tests_in_run
    from gardenbuild.runtime.protocol import RESULT, format_marker

    inner = format_marker(RESULT, {"cases": [{"pipeline": "p", "passed": True}], "timings": {"load_s": 0.1}})
    ran = {"given": [{"pipeline": "p"}], "stdout": inner + "\n", "stderr": "", "returncode": 0, "seconds": 0.4}
    assert tests_in_run([{"metadata_json": "{}"}, {"tests_in_run": ran}]) == {
        "given": [{"pipeline": "p"}], "cases": [{"pipeline": "p", "passed": True}], "timings": {"load_s": 0.1},
        "seconds": 0.4}
    assert tests_in_run([{"tests_in_run": {**ran, "returncode": 3}}]) is None  # the session did not load: a container says why
    assert tests_in_run([{"tests_in_run": None, "why": "they ran past 60 s"}]) is None
    assert tests_in_run([{"tests_in_run": {**ran, "stdout": "nothing"}}]) is None
    assert tests_in_run([]) is None
