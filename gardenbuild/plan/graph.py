"""Compile a resolved Garden into a graph of typed build steps. Pure: no subprocess, no network.

Each step's key is a Merkle hash of its kind, its parameters (sorted JSON), the digests
of its input files and its parents' keys, so a key changes exactly when something that
can change the step's output changes.

Checking and keying the steps needs only a topological order (the standard library's
graphlib); the networkx graph of a plan, for the commands that draw or walk it, is made
when asked for: importing networkx costs 0.1-0.2 s, on the path of every notebook edit.
"""

from __future__ import annotations

import graphlib
import hashlib
import heapq
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from gardenbuild import __version__
from gardenbuild.card import garden_part
from gardenbuild.errors import GardenError
from gardenbuild.manifest.garden import Garden
from gardenbuild.plan.render import (
    API_TEMPLATE,
    ENV_TEMPLATE,
    GARDEN_TEMPLATE,
    NOTEBOOK_USER,
    RUNTIME_TEMPLATE,
    WEIGHTS_TEMPLATE,
    api_context,
    api_files,
    env_context,
    garden_context,
    pipelines_config,
    runtime_context,
)
from gardenbuild.runtime import WEIGHTS_DIR

if TYPE_CHECKING:
    import networkx as nx

PLATFORM = "x86_64-manylinux_2_36"

#: Bumped whenever what a step records changes, so records of an older layout never match.
RECORD_FORMAT = 3

KINDS = ("resolve", "fetch", "render", "build-image", "execute-notebook", "test", "emit-artifacts")
#: Step ids in build order, where kinds repeat (two fetches, two renders, four image builds).
ORDER = ("resolve", "fetch", "render-env", "build-env", "fetch-weights", "build-weights", "build-runtime",
         "render-garden", "execute-notebook", "test", "build-api", "emit-artifacts")


class PlanError(GardenError):
    """The plan itself is inconsistent (a cycle, two steps writing one output)."""


@dataclass(frozen=True)
class Inputs:
    """Digests of everything outside the Gardenfile that a build reads (files, templates, runtime, uv)."""

    files: Mapping[str, str]  # garden-relative path -> sha256
    templates: Mapping[str, str]  # template name -> sha256
    runtime: str  # sha256 over the runtime package
    uv: str = "uv"  # the uv that installs the wheels inside the image: name and version
    lock: Mapping[str, Any] | None = None  # pinned resolution, when a lockfile is used


@dataclass(frozen=True)
class Step:
    """One node of the build graph.

    A step's handler reads only its ``params``, its declared ``outputs``, the files
    named in ``inputs`` (whose digests it checks) and the records of its ``parents``;
    it writes only its ``outputs``: plain names are files in the garden's output folder,
    ``image:*`` an image, ``cache:*`` entries of a content-addressed cache. So the key,
    which hashes all of those, changes whenever the step's result can.
    """

    id: str
    kind: str
    description: str
    params: Mapping[str, Any]
    inputs: tuple[tuple[str, str], ...] = ()
    outputs: tuple[str, ...] = ()
    parents: tuple[str, ...] = ()
    key: str = ""

    def keyed(self, parent_keys: Mapping[str, str]) -> "Step":
        payload = {
            "format": RECORD_FORMAT,
            "kind": self.kind,
            "params": self.params,
            "inputs": sorted(self.inputs),
            "outputs": sorted(self.outputs),
            "parents": sorted(parent_keys[p] for p in self.parents),
        }
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        return Step(**{**self.__dict__, "key": hashlib.sha256(blob.encode()).hexdigest()})

    @property
    def files(self) -> tuple[str, ...]:
        """The outputs that are files in the output folder."""
        return tuple(o for o in self.outputs if ":" not in o)


ENV_REPOSITORY = "localhost/gardenbuild/env"
WEIGHTS_REPOSITORY = "localhost/gardenbuild/weights"
RUNTIME_REPOSITORY = "localhost/gardenbuild/runtime"
SESSION_REPOSITORY = "localhost/gardenbuild/session"
GARDEN_REPOSITORY = "localhost/gardens"


def env_image_name(step: Step) -> str:
    """The tag of the environment image the build-env step makes: named by its key."""
    return f"{ENV_REPOSITORY}:{step.key[:20]}"


def weights_image_name(step: Step) -> str:
    """The tag of the image the build-weights step makes (the environment with the weights), by its key."""
    return f"{WEIGHTS_REPOSITORY}:{step.key[:20]}"


def runtime_image_name(step: Step) -> str:
    """The tag of the image the build-runtime step makes (the environment with the runtime), by its key."""
    return f"{RUNTIME_REPOSITORY}:{step.key[:20]}"


def session_image_name(step: Step) -> str:
    """The tag of the image the execute-notebook step makes (the notebook's saved session), by its key."""
    return f"{SESSION_REPOSITORY}/{step.params['garden']}:{step.key[:20]}"


def garden_image_name(step: Step) -> str:
    """The tag of the garden image the build-api step makes: named by its key."""
    return f"{GARDEN_REPOSITORY}/{step.params['garden']}:{step.key[:20]}"


#: The tag each image-making step gives its image.
IMAGE_NAMES = {"build-env": env_image_name, "build-weights": weights_image_name, "build-runtime": runtime_image_name,
               "execute-notebook": session_image_name, "build-api": garden_image_name}


@dataclass
class Plan:
    garden: Garden
    by_id: Mapping[str, Step] = field(compare=False)  # keyed steps, in build order (see `key_steps`)
    lock_changes: list[str] = field(default_factory=list, compare=False)  # how the garden left its lock

    def steps(self) -> Iterator[Step]:
        """Steps in a stable topological order."""
        yield from self.by_id.values()

    def step(self, step_id: str) -> Step:
        return self.by_id[step_id]

    def has(self, step_id: str) -> bool:
        return step_id in self.by_id

    def needs(self, step_id: str) -> set[str]:
        """`step_id` and every step it depends on, directly or not."""
        wanted, todo = set(), [step_id]
        while todo:
            current = todo.pop()
            if current not in wanted:
                wanted.add(current)
                todo.extend(self.by_id[current].parents)
        return wanted

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The plan as a networkx graph (nodes carry their ``step``), for drawing and analysis."""
        return to_networkx(self.by_id)

    def image_of(self, step_id: str) -> str:
        """The tag of the image step `step_id` makes."""
        return IMAGE_NAMES[step_id](self.step(step_id))

    @property
    def env_image(self) -> str:
        return self.image_of("build-env")

    @property
    def runtime_image(self) -> str:
        """What the garden's Containerfile builds FROM."""
        return self.image_of("build-runtime")

    @property
    def image(self) -> str:
        return self.image_of("build-api")

    def files(self) -> set[str]:
        """Every file in the output folder that some step of this plan writes."""
        return {name for step in self.steps() for name in step.files}


#: Every file any plan's steps may write into the output folder (a plan declares a subset).
BUILD_FILES = ("requirements.lock", "system-packages.lock", "Containerfile.env", "Containerfile", "pipelines.json",
               "metadata.json", "image.json", "executed.ipynb", "notebook.log", "test-report.json", "build.json")


def _steps(garden: Garden, inputs: Inputs) -> list[Step]:
    resolve_params: dict[str, Any] = {
        "requirements": list(garden.requirements),
        "python": garden.python,
        "platform": PLATFORM,
        "indexes": list(garden.indexes),
        "find_links": list(garden.find_links),
        "system_packages": list(garden.system_packages),
    }
    if inputs.lock is not None:
        resolve_params = {"locked": inputs.lock}
    resolved = ("requirements.lock",) + (("system-packages.lock",) if garden.system_packages else ())
    n_tests = sum(len(p.tests) for p in garden.pipelines)
    every = ("resolve", "fetch", "render-env", "build-env", "build-runtime", "render-garden", "execute-notebook", "test",
             "build-api")
    weights: list[Step] = []
    below_notebook = "build-env"
    if garden.weights:
        # The weights' own layer: keyed by their digests, so a notebook edit reuses it.
        weights = [
            Step("fetch-weights", "fetch", f"fetch {len(garden.weights)} weights file(s) into the cache",
                 {"weights": [w.as_json() for w in garden.weights]}, outputs=("cache:weights",)),
            Step("build-weights", "build-image", "build the weights layer",
                 {"template": WEIGHTS_TEMPLATE, "weights_dir": WEIGHTS_DIR, "gardenbuild_version": __version__,
                  "user": NOTEBOOK_USER},
                 inputs=(("template:" + WEIGHTS_TEMPLATE, inputs.templates[WEIGHTS_TEMPLATE]),),
                 outputs=("image:weights",), parents=("build-env", "fetch-weights")),
        ]
        below_notebook = "build-weights"
        every += ("fetch-weights", "build-weights")
    return [
        Step("resolve", "resolve",
             f"pin {len(inputs.lock['wheels'])} packages from Gardenfile.lock" if inputs.lock is not None
             else f"resolve {len(garden.requirements)} requirement(s) for Python {garden.python}",
             resolve_params, outputs=resolved),
        Step("fetch", "fetch", "fetch wheels into the cache", {}, outputs=("cache:wheels",), parents=("resolve",)),
        Step("render-env", "render", "render Containerfile.env",
             {"template": ENV_TEMPLATE, "context": env_context(garden)},
             inputs=(("template:" + ENV_TEMPLATE, inputs.templates[ENV_TEMPLATE]),), outputs=("Containerfile.env",)),
        Step("build-env", "build-image", "build the environment image", {"uv": inputs.uv}, outputs=("image:env",),
             parents=("resolve", "fetch", "render-env")),
        *weights,
        # The runtime's own layer, keyed by its files: gardens on one environment share it,
        # and the notebook's stage above it is a single commit.
        Step("build-runtime", "build-image", "add gardenbuild's runtime to the environment",
             {"template": RUNTIME_TEMPLATE, "context": runtime_context(), "from": below_notebook},
             inputs=(("template:" + RUNTIME_TEMPLATE, inputs.templates[RUNTIME_TEMPLATE]), ("runtime", inputs.runtime)),
             outputs=("image:runtime",), parents=(below_notebook,)),
        Step("render-garden", "render", "render Containerfile",
             {"template": GARDEN_TEMPLATE, "context": garden_context(garden), "pipelines": pipelines_config(garden)},
             inputs=(("template:" + GARDEN_TEMPLATE, inputs.templates[GARDEN_TEMPLATE]),),
             outputs=("Containerfile", "pipelines.json"), parents=("build-runtime",)),
        Step("execute-notebook", "execute-notebook", f"run {garden.notebook} inside the image and save its state",
             {"garden": garden.name, "notebook": garden.notebook, "files": sorted(inputs.files),
              "notebook_seconds": garden.limits.notebook_seconds, "secrets": list(garden.secrets),
              "accelerator": garden.accelerator},
             inputs=tuple(sorted(inputs.files.items())),
             outputs=("image:session", "metadata.json", "image.json", "executed.ipynb", "notebook.log"),
             parents=("render-garden",)),
        # The tests are the test step's own: editing one re-runs the tests, never the notebook.
        Step("test", "test", f"run {n_tests} pipeline test case(s) in the image",
             {"cases": [c for p in garden.pipelines for c in p.test_cases()],
              "limits": {"seconds": garden.limits.call_seconds, "memory": garden.limits.call_memory}},
             outputs=("test-report.json",), parents=("execute-notebook",)),
        # The image users get: the tested session plus its HTTP API (the test cases as examples),
        # labelled with its garden card (what `gardenbuild info` shows without a container).
        Step("build-api", "build-image", "build the garden image (the tested session, served over HTTP)",
             {"template": API_TEMPLATE, "garden": garden.name, "context": api_context(garden),
              "files": api_files(garden), "card": garden_part(garden)},
             inputs=(("template:" + API_TEMPLATE, inputs.templates[API_TEMPLATE]),),
             outputs=("image:garden",), parents=("resolve", "execute-notebook", "test")),
        Step("emit-artifacts", "emit-artifacts", "write the build summary",
             {"summary": {"gardenbuild": __version__, "garden": garden.name, "version": garden.meta.version,
                          "python": garden.python, "flavor": garden.flavor.name, "accelerator": garden.accelerator,
                          "base_image": garden.base_image,
                          "pipelines": [p.name for p in garden.pipelines], "limits": garden.limits.as_json()}},
             outputs=("build.json",), parents=every),
    ]


def _rank(step_id: str) -> int:
    return ORDER.index(step_id) if step_id in ORDER else len(ORDER)


def key_steps(steps: list[Step]) -> dict[str, Step]:
    """Link steps by their parents, reject duplicate ids and outputs, unknown parents and
    cycles, then key them; returns id -> keyed step in build order (by `ORDER` among the
    steps that are ready, then as given)."""
    by_id: dict[str, Step] = {}
    owners: dict[str, str] = {}
    for step in steps:
        if step.id in by_id:
            raise PlanError(f"two steps share the id '{step.id}'")
        for out in step.outputs:
            if out in owners:
                raise PlanError(f"steps '{owners[out]}' and '{step.id}' both produce '{out}'")
            owners[out] = step.id
        by_id[step.id] = step
    for step in steps:
        for parent in step.parents:
            if parent not in by_id:
                raise PlanError(f"step '{step.id}' depends on unknown step '{parent}'")
    given = {step_id: i for i, step_id in enumerate(by_id)}
    sorter = graphlib.TopologicalSorter({step.id: step.parents for step in steps})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1][:-1]  # each an immediate predecessor of the next; the first repeats at the end
        first = min(range(len(cycle)), key=lambda i: given[cycle[i]])
        raise PlanError(f"the build graph has a cycle: {' -> '.join(cycle[first:] + cycle[:first])}") from None
    ready = [(_rank(s), given[s], s) for s in sorter.get_ready()]
    heapq.heapify(ready)
    keyed: dict[str, Step] = {}
    while ready:
        _, _, step_id = heapq.heappop(ready)
        keyed[step_id] = by_id[step_id].keyed({p: keyed[p].key for p in by_id[step_id].parents})
        sorter.done(step_id)
        for s in sorter.get_ready():
            heapq.heappush(ready, (_rank(s), given[s], s))
    return keyed


def to_networkx(steps: Mapping[str, Step]) -> nx.DiGraph:
    """Keyed steps as a networkx graph: an edge from each parent, the step on its node."""
    import networkx as nx

    graph = nx.DiGraph()
    for step in steps.values():
        graph.add_node(step.id, step=step)
    graph.add_edges_from((parent, step.id) for step in steps.values() for parent in step.parents)
    return graph


def build_graph(steps: list[Step]) -> nx.DiGraph:
    """`key_steps`, as a networkx graph."""
    return to_networkx(key_steps(steps))


def plan(garden: Garden, inputs: Inputs) -> Plan:
    return Plan(garden, key_steps(_steps(garden, inputs)))


def to_dot(p: Plan) -> str:
    lines = ["digraph garden {", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"]
    for step in p.steps():
        lines.append(f'  "{step.id}" [label="{step.id}\\n{step.kind} {step.key[:12]}"];')
    for u, v in sorted(p.graph.edges):
        lines.append(f'  "{u}" -> "{v}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(p: Plan) -> str:
    lines = ["flowchart LR"]
    for step in p.steps():
        lines.append(f'  {step.id.replace("-", "_")}["{step.id}<br/>{step.kind} {step.key[:12]}"]')
    for u, v in sorted(p.graph.edges):
        lines.append(f"  {u.replace('-', '_')} --> {v.replace('-', '_')}")
    return "\n".join(lines) + "\n"
