"""`gardenbuild bench HUB`: every member's pipeline on the hub's benchmark, scored, kept.

Each member is resolved as the consumer side resolves any reference (a folder is built
first: a build whose inputs did not change is a no-op), checked against the contract,
then called in its own confined container with no network (or through its running
`gardenbuild serve`), members in parallel up to the cores; or on a Globus Compute endpoint
through each member's registered function, all batches submitted at once. A score is keyed by what it
depends on (the member's image, the data's sha256, the contract, the metrics, the
batching): a key already scored is not computed again. A member that fails (it raises,
runs out of time, returns the wrong shape, does not fit the contract) gets an entry that
says so; the others are scored all the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from gardenbuild.errors import GardenError
from gardenbuild.hub.metrics import BUILTIN, MetricError, uncertainty
from gardenbuild.hub.spec import Hub

#: Part of every score's key: a change to how scores are computed re-scores everything.
SCORING = 2  # 2: the uncertainty summary


@dataclass
class Score:
    member: str
    ref: str
    garden: str | None = None
    version: str | None = None
    image_id: str | None = None
    digest: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    uncertainty: dict[str, float] | None = None  # see `metrics.uncertainty`
    seconds: float | None = None
    error: str | None = None
    cached: bool = False
    key: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def score_key(hub: Hub, image_id: str) -> str:
    spec = hub.spec
    metrics = [{**m.model_dump(), "code": hashlib.sha256(hub.metric_source(m)).hexdigest() if m.function else None}
               for m in spec.metric]
    text = json.dumps({"image": image_id, "data": spec.data.sha256, "contract": spec.contract.model_dump(),
                       "metrics": metrics, "batch": spec.data.batch, "scoring": SCORING}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def contract_problem(hub: Hub, card: dict[str, Any]) -> str | None:
    """Why a member's garden does not fit the hub's contract, or None."""
    contract = hub.spec.contract
    pipelines = {p["name"]: p for p in card.get("pipelines") or []}
    if contract.pipeline not in pipelines:
        return (f"it has no pipeline '{contract.pipeline}' (it has: {', '.join(sorted(pipelines)) or 'none'})")
    params = [p.get("name") for p in pipelines[contract.pipeline].get("parameters") or []]
    if params and contract.input not in params:
        signature = pipelines[contract.pipeline].get("signature", "(...)")
        return f"its pipeline '{contract.pipeline}{signature}' has no parameter '{contract.input}'"
    return None


def batches(items: tuple[Any, ...], size: int) -> list[list[Any]]:
    size = size or len(items)
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def check_predictions(result: Any, expected: int) -> list[Any]:
    if not isinstance(result, list):
        raise MetricError(f"the pipeline returned {type(result).__name__}, not a list with one value per input")
    if len(result) != expected:
        raise MetricError(f"the pipeline returned {len(result)} values for {expected} inputs")
    return result


#: Runs a metric of the hub's own: (hub, metric, predicted, reference) -> float.
MetricRunner = Callable[[Hub, Any, list[Any], tuple[Any, ...]], float]

#: What runs a hub's own metric function inside the container: its file is /hub/metric.py.
METRIC_RUNNER = """
import importlib.util, json, math, sys
spec = importlib.util.spec_from_file_location("hub_metric", "/hub/metric.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
given = json.load(sys.stdin)
value = float(getattr(module, sys.argv[1])(given["predicted"], given["reference"]))
if not math.isfinite(value):
    raise SystemExit(f"the metric returned {value}")
print(json.dumps({"value": value}))
"""


def metric_in_container(backend: Any, image: str) -> MetricRunner:
    """A `MetricRunner` that runs the function in a fresh container of ``image`` (a base image:
    Python's standard library), with no network, the file mounted read-only, one minute."""
    from gardenbuild.backends import Limits

    def run(hub: Hub, metric: Any, predicted: list[Any], reference: tuple[Any, ...]) -> float:
        file, _, function = str(metric.function).partition(":")
        done = backend.run(image, ["python3", "-c", METRIC_RUNNER, function], volumes=[(hub.root / file, "/hub/metric.py", "ro")],
                           stdin=json.dumps({"predicted": predicted, "reference": list(reference)}).encode(),
                           limits=Limits(seconds=60, memory=2**30))
        if done.returncode != 0 or done.limit:
            last = (done.stderr.decode(errors="replace").strip().splitlines() or ["it failed"])[-1]
            raise MetricError(f"the metric {metric.name} ({metric.function}) failed: {last}")
        return float(json.loads(done.stdout.decode().strip().splitlines()[-1])["value"])

    return run


def compute(hub: Hub, predicted: list[Any], run_metric: MetricRunner | None = None) -> dict[str, float]:
    out = {}
    for m in hub.spec.metric:
        if m.function:
            if run_metric is None:
                raise MetricError(f"the metric {m.name} is the hub's own and nothing here can run it")
            out[m.name] = round(run_metric(hub, m, predicted, hub.reference), 6)
        else:
            out[m.name] = round(BUILTIN[m.name](predicted, hub.reference), 6)
    return out


@dataclass
class Bench:
    """Runs a hub's benchmark; every side effect behind a callable, for the tests' sake."""

    hub: Hub
    catalog: Any
    resolve: Callable[[str], Any]  # ref -> gardenbuild.consumer.resolve.Resolved (built, local)
    #: (resolved, pipeline, the arguments of each call) -> each call's JSON result, in order
    call: Callable[[Any, str, list[dict[str, Any]]], list[Any]]
    reporter: Any
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    resolved: dict[str, Any] = field(default_factory=dict)  # member name -> what it resolved to, after `run`
    run_metric: MetricRunner | None = None  # the hub's own metrics (see `metric_in_container`)

    def run(self, *, only: str | None = None, fresh: bool = False) -> list[Score]:
        names = [self.hub.member_name(i) for i in range(len(self.hub.spec.member))]
        if only is not None and only not in names:
            from gardenbuild.errors import UserError

            raise UserError(f"the hub {self.hub.name} has no member '{only}'", hint=f"members: {', '.join(names)}")
        known = self.catalog.scores(self.hub.name)
        todo: list[tuple[Score, Any]] = []
        done: list[Score] = []
        for i, name in enumerate(names):
            if only is not None and name != only:
                if name in known:
                    done.append(from_row(known[name]))
                continue
            score = Score(name, self.hub.member_ref(i))
            try:
                resolved = self.resolve(score.ref)
            except GardenError as exc:
                score.error = f"could not be resolved or built: {exc.message}"
                done.append(self._keep(score))
                continue
            self.resolved[name] = resolved
            score.garden, score.version = resolved.name, resolved.version
            score.image_id, score.digest = resolved.image, resolved.digest
            problem = contract_problem(self.hub, resolved.card)
            if problem:
                score.error = f"does not fit the contract: {problem}"
                done.append(self._keep(score))
                continue
            score.key = score_key(self.hub, resolved.image or resolved.digest or "")
            row = known.get(name)
            if not fresh and row and row["key"] == score.key and not row["error"]:
                done.append(from_row(row, cached=True))
                self.reporter.info(f"{name}: scored before, inputs unchanged")
                continue
            todo.append((score, resolved))
        if todo:
            self.reporter.step(f"benchmarking {len(todo)} member(s) on {len(self.hub.inputs)} inputs "
                               f"({min(self.jobs, len(todo))} at a time)")
            with ThreadPoolExecutor(max_workers=max(1, min(self.jobs, len(todo)))) as pool:
                done += list(pool.map(lambda t: self._score(*t), todo))
        order = {n: i for i, n in enumerate(names)}
        return sorted(done, key=lambda s: order.get(s.member, len(order)))

    def _score(self, score: Score, resolved: Any) -> Score:
        contract = self.hub.spec.contract
        started = time.monotonic()
        predicted: list[Any] = []
        try:
            parts = batches(self.hub.inputs, self.hub.spec.data.batch)
            for batch, result in zip(parts, self.call(resolved, contract.pipeline,
                                                      [{contract.input: batch} for batch in parts]), strict=True):
                predicted += check_predictions(result, len(batch))
            score.metrics = compute(self.hub, predicted, self.run_metric)
            score.uncertainty = uncertainty(predicted, self.hub.reference)
        except (GardenError, MetricError) as exc:
            message = exc.message if isinstance(exc, GardenError) else str(exc)
            score.error = message.splitlines()[0] if message else type(exc).__name__
        score.seconds = round(time.monotonic() - started, 2)
        self.reporter.info(f"{score.member}: " + (f"failed: {score.error}" if score.error else
                                                  ", ".join(f"{k} {v:.4g}" for k, v in score.metrics.items())
                                                  + f" ({score.seconds:.1f} s)"))
        return self._keep(score)

    def _keep(self, score: Score) -> Score:
        self.catalog.record_score(self.hub.name, score.member, ref=score.ref, key=score.key, garden=score.garden,
                                  version=score.version, image_id=score.image_id, digest=score.digest,
                                  data_sha256=self.hub.spec.data.sha256, metrics=score.metrics,
                                  uncertainty=score.uncertainty, seconds=score.seconds,
                                  error=score.error)
        return score


def from_row(row: dict[str, Any], cached: bool = False) -> Score:
    """A score as the catalog keeps it."""
    return Score(row["member"], row["ref"], row["garden"], row["version"], row["image_id"], row["digest"],
                 row["metrics"], row.get("uncertainty"), row["seconds"], row["error"], cached, row["key"])


def leaderboard(hub: Hub, scores: list[Score]) -> list[Score]:
    """Scored members best first by the hub's first metric, then the failed ones."""
    return ranked(scores, hub.spec.metric[0].name, hub.spec.metric[0].higher)


def ranked(scores: list[Score], first: str, higher: bool) -> list[Score]:
    sign = -1 if higher else 1
    good = sorted((s for s in scores if not s.error and first in s.metrics), key=lambda s: sign * s.metrics[first])
    return good + [s for s in scores if s not in good]
