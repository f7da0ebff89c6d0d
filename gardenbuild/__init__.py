"""gardenbuild: compile a notebook into a runnable, citable, reproducible artifact.

Importing the package must stay cheap and dependency-free: inside a garden image only
this file and ``gardenbuild.runtime`` exist.
"""

from gardenbuild.runtime import garden_pipeline, weights

__version__ = "0.1.0"
__all__ = ["garden_pipeline", "weights", "__version__"]
