"""gardenbuild: compile a notebook into a runnable, citable, reproducible artifact.

Importing the package must stay cheap and dependency-free: inside a garden image only
this file and ``gardenbuild.runtime`` exist.
"""

from gardenbuild.runtime import garden_pipeline, weights

__version__ = "0.1.0"
__all__ = ["garden_pipeline", "weights", "load", "__version__"]


def load(ref: str, **options):  # type: ignore[no-untyped-def]
    """The garden named by ``ref`` (a DOI, an image, a folder or a name): see
    `gardenbuild.consumer.api.load`. Imported on first use, so the image's runtime never needs it."""
    from gardenbuild.consumer.api import load as _load

    return _load(ref, **options)
