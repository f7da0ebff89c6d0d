"""Push a built garden image to an OCI registry and name it by digest; read and pull one back.

``--registry HOST/NAMESPACE`` sends the image to ``HOST/NAMESPACE/<garden>:<version>``
and records it as ``HOST/NAMESPACE/<garden>@sha256:...``, the only name that cannot move.

The image carries OCI labels for title, version, licence, source and pipeline names from
the build. The DOI is known only after it is reserved, so when there is one the pushed
image is a label-only child of the built one (``FROM <image id>`` plus ``LABEL``s, built
with a fixed timestamp): the same layers, a new config, and the same digest for the same
DOI on every run. Pushing it again uploads nothing: the registry already holds every blob.

Credentials are whatever buildah uses: ``buildah login HOST`` (its default auth file),
``REGISTRY_AUTH_FILE``, or ``--authfile FILE``. gardenbuild never reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gardenbuild.backends import Backend
from gardenbuild.errors import BackendError, GardenError, UserError

if TYPE_CHECKING:  # consumers read and pull images without loading the manifest's pydantic models
    from gardenbuild.manifest.garden import Garden

DOI_LABEL = "dev.gardenbuild.doi"
_HOST = re.compile(r"^(localhost|[a-z0-9-]+(\.[a-z0-9-]+)+|\[[0-9a-f:]+\])(:\d+)?$", re.I)
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"[^A-Za-z0-9_.-]")

AUTH_HINT = ("log in with: buildah login {host}  (or pass --authfile FILE, or set REGISTRY_AUTH_FILE "
             "to a containers auth.json)")


class RegistryError(GardenError):
    """The registry refused the push or could not be reached."""


@dataclass(frozen=True)
class Destination:
    host: str
    repository: str  # HOST/NAMESPACE/NAME, without tag
    tag: str

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def transport(self) -> str:
        """What buildah push takes as its destination."""
        return f"docker://{self.reference}"

    def by_digest(self, digest: str) -> str:
        return f"{self.repository}@{digest}"


def destination(registry: str, garden: str, version: str) -> Destination:
    """Where ``--registry HOST/NAMESPACE`` puts a garden version; rejects what a registry would."""
    text = registry.strip().removeprefix("docker://").rstrip("/")
    host, _, namespace = text.partition("/")
    example = "write HOST/NAMESPACE, e.g. ghcr.io/my-lab or 127.0.0.1:5000/gardens"
    if not _HOST.match(host):
        raise UserError(f"--registry '{registry}' does not start with a registry host", hint=example)
    parts = [p for p in namespace.split("/") if p] if namespace else []
    bad = [p for p in parts if not _PATH_COMPONENT.match(p)]
    if bad:
        raise UserError(f"--registry '{registry}': '{bad[0]}' is not a valid repository name part "
                        "(lower-case letters, digits, '.', '_' or '-')", hint=example)
    repository = "/".join([host.lower(), *parts, garden])
    tag = _TAG.sub("_", version)[:128]
    return Destination(host.lower(), repository, tag)


def publish_labels(garden: Garden, doi: str | None) -> dict[str, str]:
    """The labels the pushed image must carry; the build put all but the DOI there already."""
    meta = garden.meta
    labels = {
        "org.opencontainers.image.title": meta.title,
        "org.opencontainers.image.version": meta.version,
        "org.opencontainers.image.licenses": meta.license,
        "dev.gardenbuild.garden": meta.name,
        "dev.gardenbuild.pipelines": ",".join(p.name for p in garden.pipelines),
    }
    if meta.repository:
        labels["org.opencontainers.image.source"] = meta.repository
    if doi:
        labels[DOI_LABEL] = doi
        labels["org.opencontainers.image.url"] = f"https://doi.org/{doi}"
    return labels


def labels_hash(labels: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(labels), sort_keys=True).encode()).hexdigest()


def missing_labels(current: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, str]:
    """The wanted labels the image does not carry with that value."""
    return {k: v for k, v in sorted(wanted.items()) if current.get(k) != v}


def image_labels(backend: Backend, image: str) -> dict[str, str]:
    info = backend.inspect(image)
    config = (info.get("OCIv1") or {}).get("config") or {}
    return dict(config.get("Labels") or {})


def relabel(backend: Backend, image_id: str, labels: Mapping[str, str], *, tag: str | None) -> str:
    """A child of ``image_id`` that only adds ``labels``; reproducible (timestamp 0, no cache).

    Returns the new image id; layers are shared with the parent, so nothing is copied.
    """
    with tempfile.TemporaryDirectory(prefix="gardenbuild-label-") as tmp:
        containerfile = Path(tmp) / "Containerfile"
        containerfile.write_text(f"FROM {image_id}\n")
        return backend.bud(containerfile, Path(tmp), tag=tag, labels=dict(labels), layers=False, network=None)


def published_tag(image: str) -> str:
    """The local name of the relabelled image: the built image's name with ``-published``."""
    name, _, digest = image.partition("@")
    if digest:
        return f"{name}:published"
    last = name.rsplit("/", 1)[-1]
    return f"{name}-published" if ":" in last else f"{name}:published"


def push_command(source: str, dest: Destination, *, tls_verify: bool, authfile: Path | None) -> list[str]:
    """The push as a command line, for ``--dry-run`` (the backend builds the real one)."""
    argv = ["buildah", "push", f"--tls-verify={'true' if tls_verify else 'false'}"]
    if authfile is not None:
        argv += ["--authfile", str(authfile)]
    return argv + [source, dest.transport]


def push(backend: Backend, source: str, dest: Destination, *, tls_verify: bool, authfile: Path | None) -> str:
    """Push ``source`` to ``dest``; return the image's name by digest (``REPO@sha256:...``)."""
    if authfile is not None and not Path(authfile).is_file():
        raise UserError(f"--authfile {authfile} does not exist", hint=AUTH_HINT.format(host=dest.host))
    env_file = os.environ.get("REGISTRY_AUTH_FILE")
    if authfile is None and env_file and not Path(env_file).is_file():
        raise UserError(f"REGISTRY_AUTH_FILE names {env_file}, which does not exist",
                        hint=f"unset it, point it at a containers auth.json, or log in with: buildah login {dest.host}")
    try:
        digest = backend.push(source, dest.transport, tls_verify=tls_verify, authfile=authfile)
    except BackendError as exc:
        raise explain_push_failure(exc, dest, tls_verify) from None
    if not re.match(r"^sha256:[0-9a-f]{64}$", digest or ""):
        raise RegistryError(f"buildah push to {dest.reference} reported no digest ({digest!r})")
    return dest.by_digest(digest)


def explain_push_failure(exc: BackendError, dest: Destination, tls_verify: bool) -> GardenError:
    """Turn buildah's push error into what the user should do about it."""
    return explain_failure(getattr(exc, "log", "") or exc.log_tail, exc.log_tail, dest.host, dest.reference, "push")


def explain_failure(log: str, tail: str, host: str, reference: str, action: str) -> GardenError:
    """Turn a registry client's error (buildah or skopeo, pushing or pulling) into what to do."""
    low = log.lower()
    if "checking authfile" in low:
        error: GardenError = UserError("the registry credentials file does not exist",
                                       hint=f"fix --authfile or REGISTRY_AUTH_FILE, or log in with: buildah login {host}")
    elif any(s in low for s in ("unauthorized", "authentication required", "denied", "invalid username/password",
                              "403 forbidden", "no basic auth credentials")):
        error = UserError(f"the registry {host} refused the {action} of {reference}: not logged in, "
                          f"or the login expired or lacks {action} rights", hint=AUTH_HINT.format(host=host))
    elif "server gave http response to https client" in low:
        error = UserError(f"the registry {host} speaks plain HTTP", hint="add --no-tls-verify (for a registry you trust, e.g. on loopback)")
    elif any(s in low for s in ("x509:", "certificate")):
        error = UserError(f"the TLS certificate of {host} cannot be verified",
                          hint="install its CA certificate, or add --no-tls-verify for a registry you trust")
    elif any(s in low for s in ("manifest unknown", "name unknown", "not found", "404")):
        error = UserError(f"the registry {host} has no image {reference}",
                          hint="check the name, the tag or digest (a DOI names the image it was published with)")
    elif any(s in low for s in ("connection refused", "no such host", "i/o timeout", "network is unreachable",
                                "connection reset", "unexpected eof", ": eof")):
        error = RegistryError(f"the registry {host} cannot be reached",
                              hint="check that it is running and the address is right, then run the same command again")
    else:
        error = RegistryError(f"{action} of {reference} failed",
                              hint="run again with -v to see the registry client's output")
    lines = tail.strip().splitlines()
    if lines:
        error.message += f" ({lines[-1].strip()[:300]})"
    return error


def _host(repository: str) -> str:
    return repository.split("/", 1)[0]


def _check_auth(authfile: Path | None, host: str) -> None:
    if authfile is not None and not Path(authfile).is_file():
        raise UserError(f"--authfile {authfile} does not exist", hint=AUTH_HINT.format(host=host))


def remote_inspect(reference: str, *, tls_verify: bool, authfile: Path | None = None, timeout: float = 60) -> dict:
    """What the registry says of ``reference`` (``HOST/REPO:TAG`` or ``@sha256:``) without pulling it:
    ``skopeo inspect``'s JSON, with the manifest ``Digest`` and the config's ``Labels``."""
    import shutil
    import subprocess

    host = _host(reference)
    _check_auth(authfile, host)
    if shutil.which("skopeo") is None:
        from gardenbuild.errors import ToolMissingError

        raise ToolMissingError("skopeo is not installed", hint="install it: apt-get install skopeo (scripts/setup.sh does)")
    argv = ["skopeo", "inspect", "--retry-times", "1", f"--tls-verify={'true' if tls_verify else 'false'}"]
    if authfile is not None:
        argv += ["--authfile", str(authfile)]
    argv.append(f"docker://{reference}")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RegistryError(f"the registry {host} did not answer within {timeout:g} s",
                            hint="check that it is running, then run the same command again") from None
    if proc.returncode != 0:
        raise explain_failure(proc.stderr, proc.stderr, host, reference, "lookup")
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise RegistryError(f"skopeo inspect of {reference} printed no JSON") from None


def pull(backend: Backend, image_ref: str, *, tls_verify: bool, authfile: Path | None = None) -> str:
    """Pull ``image_ref`` (by digest) into local storage; return the local image id."""
    host = _host(image_ref)
    _check_auth(authfile, host)
    try:
        return backend.pull(f"docker://{image_ref}", tls_verify=tls_verify, authfile=authfile)
    except BackendError as exc:
        raise explain_failure(getattr(exc, "log", "") or exc.log_tail, exc.log_tail, host, image_ref, "pull") from None
