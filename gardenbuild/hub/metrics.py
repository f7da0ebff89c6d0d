"""The built-in metrics of a hub's benchmark: pure functions of (predicted, reference).

A prediction is a number (or a label), or, from a model that states its uncertainty, an
object ``{"mean": m, "lower": l, "upper": u}`` (a central interval; ``level`` its nominal
coverage, default 0.9). The point metrics read ``mean`` from such objects; ``coverage``
and ``calibration_error`` need them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

#: How a metric ranks: True when a higher value is better.
HIGHER_IS_BETTER = {"mae": False, "rmse": False, "r2": True, "accuracy": True, "f1": True, "coverage": True,
                    "calibration_error": False}


class MetricError(ValueError):
    """The predictions cannot be scored by this metric (wrong kind, wrong length)."""


def point(value: Any) -> Any:
    return value.get("mean") if isinstance(value, dict) else value


def _numbers(predicted: Sequence[Any], reference: Sequence[Any]) -> tuple[list[float], list[float]]:
    p, r = [point(v) for v in predicted], list(reference)
    for name, values in (("prediction", p), ("reference", r)):
        bad = next((v for v in values if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v)), None)
        if bad is not None or any(isinstance(v, bool) for v in values):
            raise MetricError(f"a {name} is not a number: {bad!r}")
    return [float(v) for v in p], [float(v) for v in r]


def mae(predicted: Sequence[Any], reference: Sequence[Any]) -> float:
    p, r = _numbers(predicted, reference)
    return sum(abs(a - b) for a, b in zip(p, r)) / len(r)


def rmse(predicted: Sequence[Any], reference: Sequence[Any]) -> float:
    p, r = _numbers(predicted, reference)
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(p, r)) / len(r))


def r2(predicted: Sequence[Any], reference: Sequence[Any]) -> float:
    p, r = _numbers(predicted, reference)
    mean = sum(r) / len(r)
    total = sum((b - mean) ** 2 for b in r)
    if total == 0:
        raise MetricError("R² is undefined when every reference value is the same")
    return 1.0 - sum((a - b) ** 2 for a, b in zip(p, r)) / total


def accuracy(predicted: Sequence[Any], reference: Sequence[Any]) -> float:
    p = [point(v) for v in predicted]
    return sum(a == b for a, b in zip(p, reference)) / len(reference)


def f1(predicted: Sequence[Any], reference: Sequence[Any]) -> float:
    """Macro-averaged F1 over the classes of the reference."""
    p = [point(v) for v in predicted]
    scores = []
    for label in sorted(set(reference), key=repr):
        tp = sum(a == label and b == label for a, b in zip(p, reference))
        fp = sum(a == label and b != label for a, b in zip(p, reference))
        fn = sum(a != label and b == label for a, b in zip(p, reference))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


def _intervals(predicted: Sequence[Any]) -> list[tuple[float, float, float]]:
    out = []
    for v in predicted:
        if not (isinstance(v, dict) and all(isinstance(v.get(k), (int, float)) for k in ("lower", "upper"))):
            raise MetricError("this metric needs predictions with an interval: {\"mean\", \"lower\", \"upper\"}")
        out.append((float(v["lower"]), float(v["upper"]), float(v.get("level", 0.9))))
    return out


def coverage(predicted: Sequence[Any], reference: Sequence[Any]) -> float:
    """The share of reference values inside the stated intervals."""
    r = [float(x) for x in reference]
    return sum(lo <= b <= hi for (lo, hi, _), b in zip(_intervals(predicted), r)) / len(r)


def calibration_error(predicted: Sequence[Any], reference: Sequence[Any]) -> float:
    """|coverage - nominal level|, the level the intervals claim (their mean ``level``)."""
    intervals = _intervals(predicted)
    nominal = sum(level for _, _, level in intervals) / len(intervals)
    return abs(coverage(predicted, reference) - nominal)


def uncertainty(predicted: Sequence[Any], reference: Sequence[Any]) -> dict[str, float] | None:
    """What a model that states its uncertainty claims and achieves: the intervals' nominal
    level, the share of reference values they hold, their mean width; None for point predictions."""
    if not predicted or not all(isinstance(v, dict) and "lower" in v and "upper" in v for v in predicted):
        return None
    intervals = _intervals(predicted)
    return {"level": round(sum(level for _, _, level in intervals) / len(intervals), 6),
            "coverage": round(coverage(predicted, reference), 6),
            "width": round(sum(hi - lo for lo, hi, _ in intervals) / len(intervals), 6)}


BUILTIN: dict[str, Callable[[Sequence[Any], Sequence[Any]], float]] = {
    "mae": mae, "rmse": rmse, "r2": r2, "accuracy": accuracy, "f1": f1, "coverage": coverage,
    "calibration_error": calibration_error,
}
