"""The Python API for someone else's garden: ``gardenbuild.load(ref)``.

    g = gardenbuild.load("10.5072/garden.solubility-1.0.0.abcd1234")
    g.predict_solubility(smiles=["CCO"])                       # locally, in the pinned image
    g.predict_solubility.map([{"smiles": ["CCO"]}, {"smiles": ["c1ccccc1"]}])
    g.predict_solubility.remote(smiles=["CCO"], endpoint="...")  # Globus Compute
    g.cite("bibtex")

Arguments are checked against the pipeline's signature and type hints before anything is
launched. Results are JSON values: nothing is ever unpickled from a garden. Importing this
module costs no buildah and no Globus SDK; those load on the first call that needs them.
"""

from __future__ import annotations

import html
import inspect
import json
import typing
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from typing import Any

from gardenbuild.consumer.resolve import Resolved, Resolver
from gardenbuild.errors import UserError


class ArgumentError(UserError, TypeError):
    """A call's arguments do not fit the pipeline's signature; nothing was launched."""


_HINT_NAMES: dict[str, Any] = {
    "list": list, "dict": dict, "tuple": tuple, "set": set, "str": str, "int": int, "float": float, "bool": bool,
    "None": None, "Any": Any, "Optional": typing.Optional, "Union": typing.Union, "List": typing.List,
    "Dict": typing.Dict, "Tuple": typing.Tuple, "Sequence": typing.Sequence, "Mapping": typing.Mapping,
    "typing": typing,
}


def hint_of(text: str | None) -> Any:
    """The type a hint's text names, where only builtins and typing are involved; else Any
    (numpy, pandas or a notebook class: the image checks those itself)."""
    if not text:
        return Any
    try:
        return eval(text, {"__builtins__": {}}, dict(_HINT_NAMES))  # noqa: S307 - names above only
    except Exception:  # noqa: BLE001 - a hint naming anything else
        return Any


def signature_of(pipeline: Mapping[str, Any]) -> inspect.Signature:
    """The pipeline's `inspect.Signature`, from the card's parameters (annotations as text)."""
    kinds = {kind.name.lower(): kind for kind in type(inspect.Parameter.POSITIONAL_ONLY)}
    params = []
    for p in pipeline.get("parameters") or []:
        kind = kinds.get(p.get("kind", ""), inspect.Parameter.POSITIONAL_OR_KEYWORD)
        default = inspect.Parameter.empty
        if not p.get("required", True) and kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            default = p.get("default")
        params.append(inspect.Parameter(p["name"], kind, default=default,
                                        annotation=p.get("annotation") or inspect.Parameter.empty))
    returns = pipeline.get("returns") or inspect.Signature.empty
    return inspect.Signature(params, return_annotation=returns)


def check_arguments(pipeline: Mapping[str, Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The call's arguments as the keyword object the image takes; `ArgumentError` naming the
    parameter when they do not fit."""
    from gardenbuild.runtime.call import binding_problem
    from gardenbuild.runtime.signature import mismatch

    name = pipeline["name"]
    sig = signature_of(pipeline)
    shown = pipeline.get("signature") or str(sig)
    problem = binding_problem(sig, list(args), dict(kwargs))
    if problem:  # worded as the image words it
        raise ArgumentError(f"pipeline {name!r} takes {shown}: {problem[0]}", hint=f"call it as {name}{shown}")
    bound = sig.bind(*args, **kwargs)
    arguments: dict[str, Any] = {}
    for pname, value in bound.arguments.items():
        param = sig.parameters[pname]
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            raise ArgumentError(f"{name} takes *{pname}, which a JSON call cannot pass", hint="pass keywords only")
        items = value.items() if param.kind is inspect.Parameter.VAR_KEYWORD else [(pname, value)]
        for key, item in items:
            try:
                json.dumps(item)
            except (TypeError, ValueError):
                raise ArgumentError(f"parameter {key} of {name} is a {type(item).__name__}, which is not JSON",
                                    hint="pass lists, numbers, strings, true/false, null and objects") from None
            hint = hint_of(param.annotation if isinstance(param.annotation, str) else None)
            reason = None if param.kind is inspect.Parameter.VAR_KEYWORD else mismatch(item, hint, f"parameter {key}")
            if reason:
                raise ArgumentError(f"pipeline {name!r}: {reason}", hint=f"the pipeline's signature is {name}{shown}")
            arguments[key] = item
    return arguments


class Pipeline:
    """One pipeline of a loaded garden; calling it runs it locally (see `local`)."""

    def __init__(self, garden: "Garden", spec: Mapping[str, Any]) -> None:
        self._garden, self._spec = garden, dict(spec)
        self.__name__ = self.__qualname__ = spec["name"]
        self.__signature__ = signature_of(spec)
        self.__doc__ = spec.get("docstring") or spec.get("description") or None

    @property
    def signature(self) -> str:
        """The signature as the notebook wrote it, ``(smiles: list[str]) -> list[float]``."""
        return self._spec.get("signature") or str(self.__signature__)

    def __repr__(self) -> str:
        return f"<pipeline {self._garden.name}.{self.__name__}{self.signature}>"

    @property
    def tests(self) -> list[dict[str, Any]]:
        return list(self._spec.get("tests") or [])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.local(*args, **kwargs)

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Run in a container of the garden's pinned image on this machine (warm through a
        `gardenbuild serve` of it when one runs). Returns the result as JSON values."""
        from gardenbuild.consumer import local

        arguments = check_arguments(self._spec, args, kwargs)
        outcome, _ = local.call(self._garden._resolved, self.__name__, json.dumps(arguments).encode(),
                                call_limits=local.limits(self._garden._resolved), via="python")
        return outcome.result

    def map(self, inputs: Iterable[Mapping[str, Any]]) -> list[Any]:
        """Call once per keyword object of ``inputs`` (all checked first); results in order."""
        from gardenbuild.consumer import local

        payloads = [check_arguments(self._spec, (), dict(i)) for i in inputs]
        resolved = self._garden._resolved
        results = []
        for arguments in payloads:
            outcome, _ = local.call(resolved, self.__name__, json.dumps(arguments).encode(),
                                    call_limits=local.limits(resolved), via="python")
            results.append(outcome.result)
        return results

    def submit(self, *args: Any, endpoint: str, container_type: str = "docker", **kwargs: Any) -> Future:
        """Start the call on a Globus Compute endpoint; a `concurrent.futures.Future` of its result."""
        from gardenbuild.consumer import remote

        arguments = check_arguments(self._spec, args, kwargs)
        return remote.submit(self._garden._resolved, self.__name__, arguments, endpoint=endpoint,
                             container_type=container_type)

    def remote(self, *args: Any, endpoint: str, container_type: str = "docker", timeout: float | None = None,
               **kwargs: Any) -> Any:
        """Run on a Globus Compute endpoint, in the garden's pinned image, and wait for the result."""
        from gardenbuild.consumer import remote

        return remote.wait(self.submit(*args, endpoint=endpoint, container_type=container_type, **kwargs),
                           self.__name__, timeout)


class Garden:
    """A garden, loaded by reference: its metadata as attributes and one `Pipeline` per pipeline."""

    def __init__(self, resolved: Resolved) -> None:
        self._resolved = resolved
        meta = resolved.meta
        self.name: str = resolved.name
        self.title: str = meta.get("title", "")
        self.version: str = resolved.version
        self.description: str = meta.get("description", "")
        self.authors: list[str] = [a.get("name", "") for a in meta.get("authors") or []]
        self.license: str = meta.get("license", "")
        self.doi: str | None = resolved.doi
        self.image: str | None = resolved.image_ref or resolved.image
        self.python: str | None = resolved.card.get("python")
        self.packages: dict[str, str] = dict(resolved.card.get("packages") or {})
        self.pipelines: dict[str, Pipeline] = {p["name"]: Pipeline(self, p) for p in resolved.pipelines}

    def __getattr__(self, name: str) -> Pipeline:
        pipelines = self.__dict__.get("pipelines") or {}
        if name in pipelines:
            return pipelines[name]
        raise AttributeError(f"garden {self.__dict__.get('name', '?')!r} has no pipeline or attribute {name!r}"
                             + (f" (pipelines: {', '.join(pipelines)})" if pipelines else ""))

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.pipelines))

    def __repr__(self) -> str:
        lines = [f"{self.title} ({self.name} {self.version})"]
        if self.authors:
            lines.append("by " + ", ".join(self.authors))
        if self.doi:
            lines.append(f"DOI https://doi.org/{self.doi}")
        if self.image:
            lines.append(f"image {self.image}")
        lines += [f"  {name}{p.signature}" for name, p in self.pipelines.items()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        e = html.escape
        doi = (f'<p>DOI <a href="https://doi.org/{e(self.doi)}">{e(self.doi)}</a></p>' if self.doi else "")
        rows = "".join(f"<li><code>{e(n)}{e(p.signature)}</code>"
                       + (f"<br><small>{e((p.__doc__ or '').splitlines()[0])}</small>" if p.__doc__ else "") + "</li>"
                       for n, p in self.pipelines.items())
        return (f"<div><strong>{e(self.title)}</strong> <small>{e(self.name)} {e(self.version)}</small>"
                f"<p>{e(', '.join(self.authors))}</p>{doi}<ul>{rows}</ul></div>")

    def cite(self, format: str = "text") -> str:
        """The garden's citation: ``text``, ``bibtex``, ``ris``, ``csl-json``, ``cff`` (CITATION.cff) or ``codemeta``."""
        from gardenbuild.consumer.cite import cite

        return cite(self._resolved, format)

    def info(self) -> dict[str, Any]:
        """Everything known of the garden, as `gardenbuild info --json` prints it."""
        return self._resolved.as_json()


def load(ref: str, *, pull: bool = True, tls_verify: bool = True, resolver: Resolver | None = None) -> Garden:
    """The garden named by ``ref``: a DOI, an image (by digest, or a tag resolved to one), a
    folder or a name from the local catalog. A garden in a registry is pulled by digest
    first (``pull=False`` describes it from its labels only; it cannot be called locally then)."""
    return Garden((resolver or Resolver(tls_verify=tls_verify)).resolve(ref, pull=pull))
