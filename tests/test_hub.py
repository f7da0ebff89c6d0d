"""Hubs: the Hubfile, the metrics, scoring and its cache, and real benches of real gardens."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gardenbuild.catalog import Catalog
from gardenbuild.engine.call import PipelineError
from gardenbuild.errors import ConfigError
from gardenbuild.hub import metrics
from gardenbuild.hub.bench import Bench, leaderboard
from gardenbuild.hub.spec import HUBFILE, load
from helpers import cli, copy_garden

integration = pytest.mark.integration
EXAMPLE_HUB = Path(__file__).resolve().parent.parent / "examples" / "solubility-hub"
DATA = {"x": [1.0, 2.0, 3.0, 4.0], "y": [2.0, 4.5, 5.5, 8.0]}


def write_hub(folder: Path, members: list[str], *, extra: str = "", data: dict | None = None) -> Path:
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data or DATA).encode()
    (folder / "data.json").write_bytes(raw)
    body = (f'[hub]\nname = "tiny"\ntitle = "Doubling"\n\n[contract]\npipeline = "predict"\ninput = "x"\n\n'
            f'[data]\nfile = "data.json"\nsha256 = "{hashlib.sha256(raw).hexdigest()}"\ninput = "x"\nreference = "y"\n'
            f'{extra}\n[[metric]]\nname = "mae"\n\n[[metric]]\nname = "rmse"\n\n[[metric]]\nname = "r2"\n')
    body += "".join(f'\n[[member]]\nref = "{m}"\n' for m in members)
    (folder / HUBFILE).write_text(body)
    return folder


# ---- pure -------------------------------------------------------------------------------------

def test_metrics_match_an_independent_computation():
    rng = np.random.default_rng(0)
    ref, pred = rng.normal(size=50), rng.normal(size=50)
    assert metrics.mae(list(pred), list(ref)) == pytest.approx(np.mean(np.abs(pred - ref)))
    assert metrics.rmse(list(pred), list(ref)) == pytest.approx(np.sqrt(np.mean((pred - ref) ** 2)))
    assert metrics.r2(list(pred), list(ref)) == pytest.approx(1 - np.sum((pred - ref) ** 2) / np.sum((ref - ref.mean()) ** 2))
    labels, guess = ["a", "b", "a", "c", "b"], ["a", "b", "b", "c", "a"]
    assert metrics.accuracy(guess, labels) == 0.6
    # per class F1: a 1/2, b 1/2, c 1: macro 2/3
    assert metrics.f1(guess, labels) == pytest.approx(2 / 3)
    intervals = [{"mean": 0.0, "lower": -1.0, "upper": 1.0, "level": 0.9}] * 4
    assert metrics.coverage(intervals, [0.5, 2.0, -0.5, 0.9]) == 0.75
    assert metrics.calibration_error(intervals, [0.5, 2.0, -0.5, 0.9]) == pytest.approx(0.15)
    assert metrics.mae(intervals, [0.0] * 4) == 0.0  # point metrics read the mean
    with pytest.raises(metrics.MetricError):
        metrics.coverage([1.0], [1.0])
    with pytest.raises(metrics.MetricError):
        metrics.mae(["x"], [1.0])


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('name = "mae"', 'name = "mape"'), "metric[0]: 'mape' is not a built-in metric"),
    (lambda t: t.replace('name = "mae"', 'name = "mine"\nfunction = "m.py:mine"'),
     "say how a metric of your own ranks: higher_is_better"),
    (lambda t: t.replace('name = "mae"', 'name = "mine"\nfunction = "gone.py:mine"\nhigher_is_better = true'),
     "metric[0].function: gone.py is not a file in the hub's folder"),
    (lambda t: t.replace('sha256 = "', 'sha256 = "00'), "data.sha256"),
    (lambda t: t.replace('input = "x"\nreference', 'input = "z"\nreference'), "the JSON data needs lists under 'z'"),
    (lambda t: t.replace('file = "data.json"', 'file = "nowhere.json"'), "data.file: nowhere.json does not exist"),
    (lambda t: t.replace('file = "data.json"', 'file = "../data.json"'), "is outside the hub's folder"),
    (lambda t: t.replace('[contract]\n', '[contract]\ncolour = "red"\n'), "contract.colour"),
    (lambda t: t.split("[[member]]")[0], "member"),
])
def test_a_bad_hubfile_is_one_readable_error_naming_the_key(tmp_path, edit, message):
    hub = write_hub(tmp_path / "hub", ["a"])
    (hub / HUBFILE).write_text(edit((hub / HUBFILE).read_text()))
    with pytest.raises(ConfigError) as caught:
        load(hub)
    assert message in "\n".join(caught.value.lines())
    code, out, err = cli("bench", str(hub))
    assert code == 2 and "Traceback" not in err and err.startswith("error: ")


def test_a_changed_data_file_is_refused_by_its_sha256(tmp_path):
    hub = write_hub(tmp_path / "hub", ["a"])
    (hub / "data.json").write_text(json.dumps({"x": [1.0], "y": [3.0]}))
    with pytest.raises(ConfigError, match="the data changed, or the sha256 is wrong"):
        load(hub)


def fake_resolved(name: str, params=("x",)) -> SimpleNamespace:
    card = {"pipelines": [{"name": "predict", "signature": "(x: list[float]) -> list[float]",
                           "parameters": [{"name": p} for p in params]}]}
    return SimpleNamespace(name=name, version="1", image=f"img-{name}", digest=None, card=card)


class Recorder:
    def __init__(self):
        self.calls: list[str] = []

    def info(self, message):
        pass

    step = warn = info


def bench_of(hub_dir: Path, behaviours: dict, catalog: Catalog, images: dict | None = None) -> tuple[Bench, list]:
    """A bench whose members are stand-ins (the real runs are the integration tests')."""
    hub = load(hub_dir)
    calls = []

    def resolve(ref):
        name = Path(ref).name
        if behaviours[name] == "unresolvable":
            from gardenbuild.errors import UserError

            raise UserError(f"no garden named {name}")
        r = fake_resolved(name, params=("smiles",) if behaviours[name] == "mismatch" else ("x",))
        r.image = (images or {}).get(name, r.image)
        return r

    def call(resolved, pipeline, arguments):
        calls.append(resolved.name)
        out = []
        for batch in arguments:
            x = batch["x"]
            how = behaviours[resolved.name]
            if how == "raises":
                raise PipelineError("pipeline 'predict' raised ValueError: bad\nTraceback ...")
            if how == "short":
                out.append([1.0])
            elif how == "interval":  # a model that states a 90% interval of half-width 1
                out.append([{"mean": 2 * v, "lower": 2 * v - 1, "upper": 2 * v + 1, "level": 0.9} for v in x])
            else:
                out.append([2 * v for v in x])
        return out

    return Bench(hub, catalog=catalog, resolve=resolve, call=call, reporter=Recorder(), jobs=2), calls


def test_scores_errors_and_the_cache(tmp_path):
    hub = write_hub(tmp_path / "hub", ["good", "raises", "short", "mismatch", "unresolvable"])
    behaviours = {"good": "ok", "raises": "raises", "short": "short", "mismatch": "mismatch",
                  "unresolvable": "unresolvable"}
    catalog = Catalog(tmp_path / "c.sqlite")
    bench, calls = bench_of(hub, behaviours, catalog)
    scores = {s.member: s for s in bench.run()}
    pred, ref = np.array([2.0, 4.0, 6.0, 8.0]), np.array(DATA["y"])
    assert scores["good"].metrics == pytest.approx({"mae": np.mean(np.abs(pred - ref)),
                                                    "rmse": math.sqrt(np.mean((pred - ref) ** 2)),
                                                    "r2": 1 - np.sum((pred - ref) ** 2) / np.sum((ref - ref.mean()) ** 2)},
                                                   abs=1e-6)
    assert scores["raises"].error == "pipeline 'predict' raised ValueError: bad"
    assert scores["short"].error == "the pipeline returned 1 values for 4 inputs"
    assert scores["mismatch"].error == ("does not fit the contract: its pipeline 'predict(x: list[float]) -> "
                                        "list[float]' has no parameter 'x'")
    assert scores["unresolvable"].error == "could not be resolved or built: no garden named unresolvable"
    assert [s.member for s in leaderboard(load(hub), list(scores.values()))][0] == "good"
    assert sorted(calls) == ["good", "raises", "short"]

    again, calls = bench_of(hub, behaviours, catalog)
    second = {s.member: s for s in again.run()}
    assert second["good"].cached and second["good"].metrics == scores["good"].metrics
    assert sorted(calls) == ["raises", "short"], "a score already made is not made again; failures are retried"

    changed, calls = bench_of(hub, behaviours, catalog, images={"good": "img-good-2"})
    assert not {s.member: s for s in changed.run()}["good"].cached and "good" in calls  # a new image: scored again
    only, calls = bench_of(hub, behaviours, catalog)
    assert [s.member for s in only.run(only="short", fresh=True)] == ["good", "raises", "short", "mismatch",
                                                                        "unresolvable"]
    assert calls == ["short"]


def test_a_member_that_states_intervals_shows_its_uncertainty(tmp_path):
    from gardenbuild.hub.page import context, render

    hub = write_hub(tmp_path / "hub", ["point", "interval"], extra="batch = 3\n")
    catalog = Catalog(tmp_path / "c.sqlite")
    bench, _ = bench_of(hub, {"point": "ok", "interval": "interval"}, catalog)
    scores = {s.member: s for s in bench.run()}
    # |2x - y| for y = 2, 4.5, 5.5, 8: 0, 0.5, 0.5, 0: all four inside +-1
    assert scores["interval"].uncertainty == {"level": 0.9, "coverage": 1.0, "width": 2.0}
    assert scores["point"].uncertainty is None
    assert scores["interval"].metrics == scores["point"].metrics  # the point metrics read the mean
    kept = catalog.scores("tiny")
    assert kept["interval"]["uncertainty"] == {"level": 0.9, "coverage": 1.0, "width": 2.0}
    html = render(context(load(hub).spec.model_dump(), 4, leaderboard(load(hub), list(scores.values())), pages={},
                          hub_ref="hub"))
    assert "uncertainty</th>" in html and "90% intervals\n    hold 100%" in html and "mean width 2" in html
    assert "point predictions" in html
    plain = render(context(load(hub).spec.model_dump(), 4, [scores["point"]], pages={}, hub_ref="hub"))
    assert "uncertainty</th>" not in plain  # no column when no member states an interval


def test_a_catalog_of_schema_2_gets_the_uncertainty_column(tmp_path):
    import sqlite3

    from gardenbuild.catalog import SCHEMA_VERSION

    path = tmp_path / "c.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE scores (hub TEXT NOT NULL, member TEXT NOT NULL, ref TEXT NOT NULL, key TEXT NOT NULL,
                garden TEXT, version TEXT, image_id TEXT, digest TEXT, data_sha256 TEXT NOT NULL,
                metrics TEXT NOT NULL DEFAULT '{}', seconds REAL, error TEXT, scored TEXT NOT NULL,
                PRIMARY KEY (hub, member));
            INSERT INTO scores VALUES ('h', 'm', 'r', 'k', 'g', '1', 'i', NULL, 's', '{"mae": 0.5}', 1.0, NULL, 't');
            PRAGMA user_version = 2;""")
    catalog = Catalog(path)
    assert catalog.scores("h")["m"]["metrics"] == {"mae": 0.5} and catalog.scores("h")["m"]["uncertainty"] is None
    catalog.record_score("h", "m", uncertainty={"level": 0.9, "coverage": 0.8, "width": 1.0})
    assert catalog.scores("h")["m"]["uncertainty"]["coverage"] == 0.8
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_on_an_endpoint_a_member_not_registered_gets_an_entry_and_a_bad_id_stops_the_run(tmp_path):
    import uuid

    from gardenbuild.consumer import remote
    from gardenbuild.consumer.refs import parse
    from gardenbuild.consumer.resolve import Resolved

    hub_dir = write_hub(tmp_path / "hub", ["unregistered"])
    resolved = Resolved(parse("unregistered==1"), {"meta": {"name": "unregistered", "version": "1"},
                                                   **fake_resolved("unregistered").card}, digest="sha256:" + "a" * 64)
    bench = Bench(load(hub_dir), catalog=Catalog(tmp_path / "c.sqlite"), resolve=lambda ref: resolved,
                  call=lambda r, p, calls: remote.call_all(r, p, calls, endpoint=str(uuid.uuid4()), client=object()),
                  reporter=Recorder())
    [score] = bench.run()
    assert score.error == "unregistered's pipeline predict is not registered with Globus Compute"
    code, out, err = cli("bench", str(hub_dir), "--endpoint", "not-a-uuid")
    assert code == 2 and "endpoint 'not-a-uuid' is not a Globus Compute endpoint id" in err and "Traceback" not in err


# ---- real gardens --------------------------------------------------------------------------------

def tiny_garden(folder: Path, name: str, body: str, *, limits: str = "") -> Path:
    """A base-flavor garden whose pipeline `predict(x: list[float]) -> list[float]` is `body`."""
    from gardenbuild.manifest.scaffold import notebook_json

    folder.mkdir(parents=True)
    cells = ["import time\nfrom gardenbuild import garden_pipeline\n",
             f"@garden_pipeline\ndef predict(x: list[float]) -> list[float]:\n    \"\"\"{name}.\"\"\"\n    {body}\n"]
    (folder / "nb.ipynb").write_text(notebook_json(f"# {name}", cells))
    (folder / "Gardenfile.toml").write_text(
        f'notebook = "nb.ipynb"\n[garden]\nname = "{name}"\ntitle = "{name}"\nlicense = "MIT"\n'
        f'[[garden.authors]]\nname = "Test Author"\n[environment]\npython = "3.11"\nflavor = "base"\n{limits}'
        f'[[pipeline]]\nname = "predict"\n')
    return folder


@integration
def test_a_hub_of_real_gardens_is_scored_cached_and_rescored_member_by_member(base_image, build_cache, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("GARDENBUILD_CACHE", str(build_cache))
    monkeypatch.setenv("GARDENBUILD_BASE_IMAGE", base_image)
    members = tmp_path / "hub" / "members"
    tiny_garden(members / "double", "hub-double", "return [2 * v for v in x]")
    tiny_garden(members / "plus", "hub-plus", "return [v + 1.5 for v in x]")
    tiny_garden(members / "raises", "hub-raises", "raise ValueError('no model yet')")
    tiny_garden(members / "slow", "hub-slow", "time.sleep(30)\n    return x", limits="[limits]\ncall_seconds = 2\n")
    hub = write_hub(tmp_path / "hub", [f"members/{m}" for m in ("double", "plus", "raises", "slow")],
                    extra='\n[[metric]]\nname = "within_one"\nfunction = "metrics.py:within_one"\nhigher_is_better = true\n')
    (hub / "metrics.py").write_text("def within_one(predicted, reference):\n"
                                    "    return sum(abs(p - r) <= 1 for p, r in zip(predicted, reference)) / len(reference)\n")
    code, out, err = cli("bench", str(hub), "--json")
    assert code == 0, err
    scores = {s["member"]: s for s in json.loads(out)["scores"]}
    ref = np.array(DATA["y"])
    for member, pred in (("double", np.array([2.0, 4.0, 6.0, 8.0])), ("plus", np.array([2.5, 3.5, 4.5, 5.5]))):
        assert scores[member]["metrics"]["mae"] == pytest.approx(np.mean(np.abs(pred - ref)), abs=1e-6)
        assert scores[member]["metrics"]["rmse"] == pytest.approx(np.sqrt(np.mean((pred - ref) ** 2)), abs=1e-6)
        assert scores[member]["image_id"] and not scores[member]["error"]
        assert scores[member]["metrics"]["within_one"] == pytest.approx(np.mean(np.abs(pred - ref) <= 1))
    assert scores["raises"]["error"].startswith("pipeline 'predict' raised ValueError: no model yet")
    assert "ran past its time limit of 2 s" in scores["slow"]["error"]
    page = Path(json.loads(out)["page"])
    assert page.is_file() and (page.parent / "members" / "double" / "index.html").is_file()
    assert 'href="members/double/index.html"' in page.read_text()

    code, out, err = cli("bench", str(hub), "--json")
    assert code == 0, err
    again = {s["member"]: s for s in json.loads(out)["scores"]}
    assert again["double"]["cached"] and again["plus"]["cached"]

    (hub / "metrics.py").write_text((hub / "metrics.py").read_text() + "# the metric's code changed\n")
    code, out, err = cli("bench", str(hub), "--only", "double", "--json")
    assert code == 0, err
    assert not {s["member"]: s for s in json.loads(out)["scores"]}["double"]["cached"], "the metric is in the key"
    notebook = members / "plus" / "nb.ipynb"
    notebook.write_text(notebook.read_text().replace("v + 1.5", "v + 2.0"))
    code, out, err = cli("bench", str(hub), "--json")
    assert code == 0, err
    third = {s["member"]: s for s in json.loads(out)["scores"]}
    assert third["double"]["cached"] and not third["plus"]["cached"]  # only the changed member
    assert third["plus"]["image_id"] != scores["plus"]["image_id"]
    assert third["plus"]["metrics"]["mae"] == pytest.approx(np.mean(np.abs(np.array(DATA["x"]) + 2.0 - ref)), abs=1e-6)


@integration
def test_the_example_hub_ranks_its_three_solubility_models(base_image, build_cache, tmp_path, monkeypatch, browser):
    from selenium.webdriver.common.by import By

    monkeypatch.setenv("GARDENBUILD_CACHE", str(build_cache))
    monkeypatch.setenv("GARDENBUILD_BASE_IMAGE", base_image)
    examples = tmp_path / "examples"
    copy_garden(EXAMPLE_HUB.parent / "solubility", examples / "solubility")
    shutil.copytree(EXAMPLE_HUB, examples / "solubility-hub",
                    ignore=shutil.ignore_patterns(".gardenbuild", ".ipynb_checkpoints"))
    code, out, err = cli("bench", str(examples / "solubility-hub"), "--json")
    assert code == 0, err
    result = json.loads(out)
    board = [s["member"] for s in result["scores"]]
    assert sorted(board) == ["esol-linear", "knn", "random-forest"]
    assert all(not s["error"] and 0.3 < s["metrics"]["mae"] < 1.5 and s["metrics"]["r2"] > 0.5
               for s in result["scores"]), result["scores"]
    maes = [s["metrics"]["mae"] for s in result["scores"]]
    assert maes == sorted(maes)  # best first
    browser.get(Path(result["page"]).as_uri())
    rows = lambda: [r.get_attribute("data-member") for r in browser.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr")]
    assert rows() == board
    browser.find_element(By.CSS_SELECTOR, 'th[data-metric="r2"] button').click()  # R²: higher first
    r2 = {s["member"]: s["metrics"]["r2"] for s in result["scores"]}
    assert rows() == sorted(r2, key=lambda m: -r2[m])
    browser.find_element(By.CSS_SELECTOR, f'tr[data-member="{board[0]}"] a').click()
    assert "solubility" in browser.title.lower()
