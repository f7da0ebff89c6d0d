"""The raw Gardenfile model: a pydantic mirror of the TOML, nothing filled in.

Every table forbids unknown keys so typos surface; defaults that depend on a flavor are
left as None here and filled by `gardenbuild.manifest.load.resolve`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from gardenbuild.manifest.flavors import supported_pythons

SLUG = r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$"
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
PEP508_EXAMPLE = "(write e.g. 'numpy>=1.26')"
ORCID = re.compile(r"^(?:https://orcid\.org/)?(\d{4}-\d{4}-\d{4}-\d{3}[\dX])$")
DOI = re.compile(r"^(?:https://doi\.org/)?(10\.\d{4,9}/\S+)$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _orcid_checksum_ok(digits: str) -> bool:
    """ISO 7064 11,2 check digit, as ORCID defines it."""
    total = 0
    for ch in digits[:-1]:
        total = (total + int(ch)) * 2
    check = (12 - total % 11) % 11
    return digits[-1] == ("X" if check == 10 else str(check))


class Author(Strict):
    name: str = Field(min_length=1)
    orcid: str | None = None
    affiliation: str | None = None

    @field_validator("orcid")
    @classmethod
    def _orcid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        m = ORCID.match(value)
        if not m:
            raise ValueError(f"'{value}' is not an ORCID iD (expected 0000-0000-0000-0000)")
        if not _orcid_checksum_ok(m.group(1).replace("-", "")):
            raise ValueError(f"'{value}' fails the ORCID checksum; check for a typo")
        return m.group(1)


def _doi(value: str | None) -> str | None:
    if value is None:
        return None
    m = DOI.match(value)
    if not m:
        raise ValueError(f"'{value}' is not a DOI (expected 10.NNNN/suffix)")
    return m.group(1)


class Paper(Strict):
    title: str = Field(min_length=1)
    doi: str | None = None
    url: str | None = None
    authors: tuple[str, ...] = ()
    citation: str | None = None

    _check_doi = field_validator("doi")(classmethod(lambda cls, v: _doi(v)))


class Dataset(Strict):
    title: str = Field(min_length=1)
    doi: str | None = None
    url: str | None = None

    _check_doi = field_validator("doi")(classmethod(lambda cls, v: _doi(v)))


class GardenMeta(Strict):
    name: str = Field(pattern=SLUG, max_length=63)
    title: str = Field(min_length=1)
    description: str = ""
    authors: tuple[Author, ...] = Field(min_length=1)
    version: str = "0.1.0"
    license: str = Field(min_length=1)
    keywords: tuple[str, ...] = ()
    repository: str | None = None
    papers: tuple[Paper, ...] = ()
    datasets: tuple[Dataset, ...] = ()

    @field_validator("license")
    @classmethod
    def _spdx(cls, value: str) -> str:
        from packaging.licenses import (
            InvalidLicenseExpression,
            canonicalize_license_expression,
        )

        try:
            return str(canonicalize_license_expression(value))
        except InvalidLicenseExpression:
            raise ValueError(f"'{value}' is not an SPDX license identifier (e.g. MIT, Apache-2.0, CC-BY-4.0)") from None

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        from packaging.version import InvalidVersion, Version

        try:
            Version(value)
        except InvalidVersion:
            raise ValueError(f"'{value}' is not a version number (e.g. 1.0.0)") from None
        return value


def _pep508(value: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(value)
    except InvalidRequirement:
        # packaging's reason ("Expected semicolon ... or end", plus a caret line) helps less than an example.
        raise ValueError(f"'{value}' is not a PEP 508 requirement {PEP508_EXAMPLE}") from None
    return value


def _debian_package(value: str) -> str:
    if not re.match(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?$", value):
        raise ValueError(f"'{value}' is not a Debian package name (lowercase, e.g. libgomp1 or libgl1=1.6.0-1)")
    return value


def _env_name(value: str) -> str:
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
        raise ValueError(f"'{value}' is not an environment variable name (letters, digits and '_', not starting with a digit)")
    return value


#: Names whose values are credentials: never written into an image (see `secrets`).
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I)
#: Variables the image itself sets; a garden's env may not replace them.
RESERVED_ENV = {
    "PATH": "the image puts its virtual environment first on PATH",
    "PYTHONPATH": "the gardenbuild runtime lives on PYTHONPATH; modules beside the notebook import without it",
    "VIRTUAL_ENV": "the image's virtual environment is fixed",
    "HOME": "the notebook runs as an unprivileged user whose HOME the image sets",
    "PYTHONHASHSEED": "the notebook runs with PYTHONHASHSEED=0 so its session reproduces",
    "SOURCE_DATE_EPOCH": "builds set it to 0 so they reproduce",
    "PYTHONDONTWRITEBYTECODE": "the image compiles its bytecode once, reproducibly",
}


def _env_entry_name(value: str) -> str:
    value = _env_name(value)
    if SECRET_NAME.search(value):
        raise ValueError(f"'{value}' looks like a credential, and env values are written into the image for anyone "
                         f"to read; declare it as secrets = [\"{value}\"] in [environment] and export it when you build")
    if value in RESERVED_ENV:
        raise ValueError(f"'{value}' cannot be set here: {RESERVED_ENV[value]}")
    return value


def _one_line(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("env values must be one line without control characters (a Containerfile ENV cannot "
                         "carry a newline faithfully); split it into several variables")
    return value


def source(value: str) -> str:
    """A package source: an index or find-links URL (http, https, file), or a folder path.

    Credentials never go in it (the Gardenfile, the lock and the image's labels are read
    by others): they come from ~/.netrc, which uv and gardenbuild's downloads both read."""
    from urllib.parse import urlsplit

    text = value.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https", "file"):
            raise ValueError(f"'{value}' is not an http, https or file URL")
        if parts.username or parts.password:
            raise ValueError(f"'{parts._replace(netloc=parts.hostname or '').geturl()}' carries credentials; keep them "
                             f"out of Gardenfile.toml: put them in ~/.netrc (machine {parts.hostname} login ... "
                             "password ...)")
    elif not text:
        raise ValueError("a package source must not be empty")
    return text


def _image_reference(value: str | None) -> str | None:
    if value is None:
        return None
    from gardenbuild.refs import parse

    parse(value)
    return value


# Checked one item at a time, so every bad entry is reported with its own index or key.
RequirementText = Annotated[str, AfterValidator(_pep508)]
PackageName = Annotated[str, AfterValidator(_debian_package)]
EnvVarName = Annotated[str, AfterValidator(_env_name)]
Source = Annotated[str, AfterValidator(source)]
EnvEntryName = Annotated[str, AfterValidator(_env_entry_name)]
EnvValue = Annotated[str, AfterValidator(_one_line)]


class Environment(Strict):
    python: str = "3.11"
    flavor: str = "base"
    accelerator: Literal["cpu", "cuda"] = "cpu"  # cuda: the flavor's CUDA build; calls then need a GPU
    requirements: tuple[RequirementText, ...] = ()
    requirements_file: str | None = None
    system_packages: tuple[PackageName, ...] = ()
    indexes: tuple[Source, ...] | None = None  # extra package indexes; replace the flavor's when given
    find_links: tuple[Source, ...] = ()  # folders or pages of wheels, beside the indexes
    env: dict[EnvEntryName, EnvValue] = Field(default_factory=dict)
    secrets: tuple[EnvVarName, ...] = ()  # names of host variables the notebook's run may read, never stored
    base_image: Annotated[str | None, AfterValidator(_image_reference)] = None

    @model_validator(mode="after")
    def _secret_not_in_env(self) -> "Environment":
        both = sorted(set(self.secrets) & set(self.env))
        if both:
            raise ValueError(f"{', '.join(both)} is both a secret and an env value; keep it in secrets only")
        return self

    @field_validator("python", mode="before")
    @classmethod
    def _python(cls, value: Any) -> Any:
        if isinstance(value, float):  # python = 3.11 written without quotes
            # 3.10 unquoted is the float 3.1; say what the user most likely meant.
            meant = "3.10" if value == 3.1 else str(value)
            raise ValueError(f"write the version as a string: python = \"{meant}\"")
        if isinstance(value, str) and value not in supported_pythons():
            raise ValueError(f"Python '{value}' is not supported; choose one of {', '.join(supported_pythons())}")
        return value


class TestCase(Strict):
    input: dict[str, Any]
    expected: Any
    tolerance: float = Field(default=1e-6, ge=0)


class Pipeline(Strict):
    name: str = Field(pattern=IDENTIFIER)
    function: str | None = Field(default=None, pattern=IDENTIFIER)
    description: str = ""
    test: tuple[TestCase, ...] = ()


def _size(value: str | int) -> str | int:
    from gardenbuild.units import parse_size

    parse_size(value)
    return value


class Limits(Strict):
    """What a build and each call may use; generous defaults, raised here per garden."""

    notebook_seconds: float = Field(default=3600, gt=0)  # the notebook's run at build time
    call_seconds: float = Field(default=600, gt=0)  # one pipeline call: run, tests, serving
    call_memory: Annotated[str | int, AfterValidator(_size)] = "8GiB"  # memory of one call


class Weights(Strict):
    """A large file the notebook reads (model weights), kept out of the notebook's layer."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=63)
    path: str | None = None  # a file in the garden folder
    url: Annotated[str | None, AfterValidator(lambda v: v if v is None else source(v))] = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _one_place(self) -> "Weights":
        if (self.path is None) == (self.url is None):
            raise ValueError("give the weights either a path (a file in the garden folder) or a url, not both")
        return self


class Publish(Strict):
    registry: str | None = None
    globus: bool = False
    doi: bool = False
    datacite_prefix: str | None = None
    datacite_test: bool = True


class Gardenfile(Strict):
    """The whole `Gardenfile.toml`."""

    notebook: str = Field(min_length=1)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    garden: GardenMeta
    environment: Environment = Field(default_factory=Environment)
    pipeline: tuple[Pipeline, ...] = Field(min_length=1)
    limits: Limits = Field(default_factory=Limits)
    weights: tuple[Weights, ...] = ()
    publish: Publish = Field(default_factory=Publish)
