"""Globus Compute: register each pipeline of a built garden as a function, and write what
endpoint administrators and callers need to run it.

A pipeline's function is a small source shim (``templates/globus/shim.py.j2``): inside
the garden's image it loads the saved notebook session once per worker, calls the
pipeline and returns the result's JSON form, as ``gardenbuild run`` does. It is
registered with the real ``globus_compute_sdk.Client`` under the ``PureSourceTextInspect``
strategy: the service stores source text, which any worker Python (3.10+) can run,
unlike dill-pickled code, which breaks across Python minor versions.

Tasks must run in the garden's image, which ``user_endpoint_config`` names by digest;
an endpoint renders it through ``endpoint_template()`` (validated by
``endpoint_schema()``). Images for Globus Compute carry `garden.GLOBUS_REQUIREMENTS`, since the
workers run inside the container.

Planning is pure: `shim_source`, `registration_body`, `user_endpoint_config` touch
neither network nor disk; `register` is the one call that talks to Globus.
"""

from __future__ import annotations

import json
import linecache
import platform
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gardenbuild import __version__
from gardenbuild.errors import GardenError, UserError
from gardenbuild.manifest.garden import Garden, PipelineSpec
from gardenbuild.report import NullReporter, Reporter
from gardenbuild.resources import data_dir

if TYPE_CHECKING:
    from globus_compute_sdk import Client

TEMPLATE_DIR = "globus"
SHIM_TEMPLATE = "shim.py.j2"
ENDPOINT_TEMPLATE = "user_config_template.yaml.j2"
ENDPOINT_SCHEMA = "user_config_schema.json"
#: The registration endpoint the SDK's ``register_function`` posts to.
REGISTER_PATH = "/v3/functions"
SOURCE_STRATEGY = "globus_compute_sdk.serialize.PureSourceTextInspect"
#: ``user_endpoint_config`` defaults per container runtime. Docker-like runtimes get the
#: host network (workers connect back to the endpoint's interchange) and --rm.
CONTAINER_TYPES = ("docker", "podman", "podman-hpc", "apptainer", "singularity")
DEFAULT_OPTIONS = {
    "docker": "--network host --rm",
    "podman": "--network host --rm",
    "podman-hpc": "--network host --rm",
    "apptainer": "",
    "singularity": "",
}
#: What each runtime needs to hand a worker the node's GPUs (for gardens built with accelerator = "cuda").
GPU_OPTIONS = {
    "docker": "--gpus all",
    "podman": "--device nvidia.com/gpu=all",
    "podman-hpc": "--gpu",
    "apptainer": "--nv",
    "singularity": "--nv",
}
_DIGEST_REF = re.compile(r"^[a-z0-9][a-z0-9._:/-]*@sha256:[0-9a-f]{64}$")


class PublishError(GardenError):
    """Registering with Globus Compute failed."""


@dataclass(frozen=True)
class ShimPaths:
    """Where the shim finds the garden inside the image (the layout `build` makes)."""

    session: str = "/garden/session.pkl"
    metadata: str = "/garden/metadata.json"
    workdir: str = "/garden/src"  # the image's WORKDIR: notebook_path is relative to it
    lib: str = "/opt/garden/lib"  # the runtime package; also on the image's PYTHONPATH


IMAGE_PATHS = ShimPaths()


# --------------------------------------------------------------------------- the shim


def _docline(value: object) -> str:
    """Text safe on one line of a triple-quoted docstring."""
    text = " ".join(str(value).split())
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates") / TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["py"] = repr  # str/None literals: quoting and escaping are Python's own
    env.filters["docline"] = _docline
    return env


def check_image_ref(image_ref: str) -> str:
    """``image_ref`` if it names an image by digest (``name@sha256:<64 hex>``)."""
    if not _DIGEST_REF.match(image_ref):
        raise UserError(
            f"Globus Compute needs the image by digest, not {image_ref!r}",
            hint="push the image first and pass REGISTRY/NAME@sha256:<digest> (a tag can move; a digest cannot)",
        )
    return image_ref


def shim_source(garden: Garden, pipeline: PipelineSpec, image_ref: str, paths: ShimPaths = IMAGE_PATHS) -> str:
    """The Python source registered for ``pipeline``: one self-contained function named
    after the pipeline."""
    template = _environment().get_template(SHIM_TEMPLATE)
    return template.render(garden=garden.meta, pipeline=pipeline, image_ref=image_ref, paths=paths,
                           gardenbuild_version=__version__)


def shim_function(source: str, name: str, filename: str) -> Callable[..., Any]:
    """Compile ``source`` into its function, with the text kept in ``linecache`` under
    ``filename`` so ``inspect.getsource`` (hence the SDK's source strategy) finds it."""
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)  # mtime None: never re-read
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def description(garden: Garden, pipeline: PipelineSpec, image_ref: str) -> str:
    head = " ".join(pipeline.description.split()) or f"Pipeline {pipeline.name} of {garden.meta.title}."
    return f"{head} (gardenbuild garden {garden.name} {garden.meta.version}; runs in {image_ref})"


def source_serializer() -> Any:
    """The SDK serializer for function code that this module registers with."""
    from globus_compute_sdk.serialize import ComputeSerializer, PureSourceTextInspect

    return ComputeSerializer(strategy_code=PureSourceTextInspect())


def _shim(garden: Garden, pipeline: PipelineSpec, image_ref: str, paths: ShimPaths) -> Callable[..., Any]:
    return shim_function(shim_source(garden, pipeline, image_ref, paths), pipeline.name,
                         f"<gardenbuild shim {garden.name}.{pipeline.name}>")


def registration_body(garden: Garden, pipeline: PipelineSpec, image_ref: str,
                      paths: ShimPaths = IMAGE_PATHS, public: bool = True) -> dict[str, Any]:
    """The JSON body the SDK posts to register ``pipeline``, built by the SDK's own
    ``FunctionRegistrationData`` as ``Client.register_function`` builds it, so a dry run
    shows exactly what would be sent."""
    from globus_compute_sdk.sdk.client import FunctionRegistrationData

    data = FunctionRegistrationData(function=_shim(garden, pipeline, image_ref, paths),
                                    description=description(garden, pipeline, image_ref),
                                    serializer=source_serializer(), public=public)
    return data.to_dict()


# --------------------------------------------------------------------------- registering


def compute_client(app: Any, *, do_version_check: bool = True) -> "Client":
    """A real Globus Compute ``Client`` on ``app`` (see `gardenbuild.publish.auth`),
    serializing function code as source."""
    from globus_compute_sdk import Client
    from globus_compute_sdk.serialize import PureSourceTextInspect

    from gardenbuild.publish.auth import translate

    try:
        return Client(app=app, do_version_check=do_version_check, code_serialization_strategy=PureSourceTextInspect())
    except Exception as e:  # noqa: BLE001 - the version check talks to the service
        raise translate(e, app, "connecting to Globus Compute") from None


def _check_source_strategy(client: Any) -> None:
    from globus_compute_sdk.serialize import PureSourceTextInspect

    strategy = getattr(getattr(client, "fx_serializer", None), "code_serializer", None)
    if not isinstance(strategy, PureSourceTextInspect):
        raise PublishError(
            f"the Globus Compute client serializes code with {type(strategy).__name__}, not source text",
            hint="make it with gardenbuild.publish.globus.compute_client (code_serialization_strategy="
                 "PureSourceTextInspect())",
        )


def register(garden: Garden, image_ref: str, *, client: Any = None, dry_run: bool = False,
             public: bool = True, paths: ShimPaths = IMAGE_PATHS, reporter: Reporter | None = None,
             known: Mapping[str, str] | None = None, on_registered: Callable[[str, str], None] | None = None,
             ) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Register every pipeline of ``garden`` as a Globus Compute function, public by
    default: a published garden is for others to call (the shim holds no secret).

    Returns ``(function_ids, requests)``: pipeline name -> function UUID (empty on a dry
    run) and, per pipeline, ``{"pipeline", "method", "path", "body"}`` — the registration
    request as sent (or, on a dry run, as it would be). ``paths`` is the layout inside
    the image; tests point it at a session on the host. Pipelines in ``known`` (ids from
    an earlier, interrupted run) are kept, not registered again; ``on_registered`` hears
    of each new id as soon as the service returned it, so a later failure loses none.
    """
    reporter = reporter or NullReporter()
    check_image_ref(image_ref)
    requests = [
        {"pipeline": p.name, "method": "POST", "path": REGISTER_PATH,
         "body": registration_body(garden, p, image_ref, paths, public)}
        for p in garden.pipelines
    ]
    if dry_run:
        return {}, requests
    if client is None:
        raise PublishError("no Globus Compute client to register with", hint="run: gardenbuild login")
    _check_source_strategy(client)
    from gardenbuild.publish.auth import translate

    app = getattr(client, "app", None)
    ids: dict[str, str] = {name: fid for name, fid in (known or {}).items()
                           if name in {p.name for p in garden.pipelines}}
    for pipeline, request in zip(garden.pipelines, requests, strict=True):
        if pipeline.name in ids:
            continue
        fn = _shim(garden, pipeline, image_ref, paths)
        try:
            ids[pipeline.name] = str(client.register_function(fn, description=request["body"]["description"],
                                                              public=public))
        except Exception as e:  # noqa: BLE001 - SDK and HTTP errors alike are translated
            raise translate(e, app, f"registering pipeline {pipeline.name!r} with Globus Compute") from None
        reporter.info(f"registered {pipeline.name} as Globus Compute function {ids[pipeline.name]}")
        if on_registered is not None:
            on_registered(pipeline.name, ids[pipeline.name])
    return ids, requests


# --------------------------------------------------------------------------- endpoint side


def check_container_type(container_type: str) -> str:
    if container_type not in CONTAINER_TYPES:
        raise UserError(f"unknown container type {container_type!r}: not one an endpoint knows",
                        hint=f"--container-type is one of: {', '.join(CONTAINER_TYPES)}")
    return container_type


def user_endpoint_config(image_ref: str, container_type: str = "docker", options: str | None = None,
                         gpu: bool = False) -> dict[str, str]:
    """What a caller passes with each task (``Executor(user_endpoint_config=...)``) so the
    endpoint's template starts workers in the garden's image (with the node's GPUs when the
    garden is built for CUDA)."""
    check_image_ref(image_ref)
    check_container_type(container_type)
    uri = f"docker://{image_ref}" if container_type in ("apptainer", "singularity") else image_ref
    config = {"container_type": container_type, "container_uri": uri}
    cmd_options = DEFAULT_OPTIONS[container_type] if options is None else options
    if gpu:
        cmd_options = f"{cmd_options} {GPU_OPTIONS[container_type]}".strip()
    if cmd_options:
        config["container_cmd_options"] = cmd_options
    return config


def endpoint_template() -> str:
    """The ``user_config_template.yaml.j2`` for endpoint administrators."""
    return (data_dir("templates") / TEMPLATE_DIR / ENDPOINT_TEMPLATE).read_text(encoding="utf-8")


def endpoint_schema() -> dict[str, Any]:
    """The JSON schema (``user_config_schema.json``) the endpoint checks
    ``user_endpoint_config`` against before rendering the template."""
    return json.loads((data_dir("templates") / TEMPLATE_DIR / ENDPOINT_SCHEMA).read_text(encoding="utf-8"))


def write_artifacts(out_dir: Path, garden: Garden, image_ref: str, function_ids: dict[str, str],
                    requests: list[dict[str, Any]] | None = None, container_type: str = "docker") -> dict[str, Path]:
    """Write, under ``out_dir/globus/``, everything endpoint admins and callers need:

    ``function_ids.json``, ``user_endpoint_config.json``, ``user_config_template.yaml.j2``,
    ``user_config_schema.json``, ``shims/<pipeline>.py`` (the shim source, for reading)
    and, given ``requests``, ``registration.json`` (the request bodies as sent). No
    credential is in any of them: bodies hold code, names and descriptions only.
    Returns name -> path.
    """
    folder = Path(out_dir) / "globus"
    (folder / "shims").mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def put(name: str, text: str) -> None:
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written[name] = path

    def put_json(name: str, data: Any) -> None:
        put(name, json.dumps(data, indent=2, sort_keys=True) + "\n")

    config = user_endpoint_config(image_ref, container_type, gpu=garden.accelerator == "cuda")
    put_json("function_ids.json", {
        "garden": garden.name,
        "image": image_ref,
        "functions": dict(sorted(function_ids.items())),
        "serialization": SOURCE_STRATEGY,
        "registered_with": {"gardenbuild": __version__, "python": platform.python_version()},
    })
    put_json("user_endpoint_config.json", config)
    put(ENDPOINT_TEMPLATE, endpoint_template())
    put_json(ENDPOINT_SCHEMA, endpoint_schema())
    for pipeline in garden.pipelines:
        put(f"shims/{pipeline.name}.py", shim_source(garden, pipeline, image_ref))
    if requests is not None:
        put_json("registration.json", requests)
    return written
