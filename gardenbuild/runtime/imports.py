"""What a notebook imports, and which distribution to require for a module.

The host reads a notebook's imports for ``gardenbuild check`` (against the locked wheels'
modules); the image reads them again just before the first cell runs, against what is
really installed, so a missing requirement stops the build in a second, naming the line
to add, instead of after an hour of training. Standard library only.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass

#: Import names whose distribution is called otherwise: the usual surprises.
DISTRIBUTIONS = {
    "sklearn": "scikit-learn", "skimage": "scikit-image", "cv2": "opencv-python-headless", "PIL": "pillow",
    "yaml": "pyyaml", "bs4": "beautifulsoup4", "Bio": "biopython", "attr": "attrs", "dateutil": "python-dateutil",
    "jwt": "pyjwt", "serial": "pyserial", "magic": "python-magic", "Crypto": "pycryptodome", "dotenv": "python-dotenv",
    "google.protobuf": "protobuf", "tensorflow_hub": "tensorflow-hub", "faiss": "faiss-cpu", "umap": "umap-learn",
    "mpl_toolkits": "matplotlib", "pylab": "matplotlib",
    "fitz": "pymupdf", "docx": "python-docx", "zmq": "pyzmq", "git": "gitpython",
    "OpenSSL": "pyopenssl", "usb": "pyusb", "wx": "wxpython",
    "Levenshtein": "levenshtein", "jose": "python-jose", "multipart": "python-multipart",
    "torch_geometric": "torch-geometric", "pytorch_lightning": "pytorch-lightning",
    "tf_keras": "tf-keras", "skbio": "scikit-bio",
}
#: Modules that ship with gardenbuild's runtime or are provided for every garden.
PROVIDED = {"gardenbuild", "garden_ai", "dill", "__future__", "__main__"}  # garden_ai: runtime.garden_ai


def distribution_for(module: str) -> str:
    """The distribution to require for importing `module` (``sklearn`` -> ``scikit-learn``)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in DISTRIBUTIONS:
            return DISTRIBUTIONS[".".join(parts[:n])]
    return parts[0].replace("_", "-")


def stdlib_modules() -> frozenset[str]:
    return frozenset(getattr(sys, "stdlib_module_names", ())) | frozenset(sys.builtin_module_names)


@dataclass(frozen=True)
class Import:
    module: str  # the dotted name imported (``sklearn.ensemble``)
    line: int  # in its cell
    guarded: bool  # inside ``try: ... except ImportError``: the notebook copes without it

    @property
    def top(self) -> str:
        return self.module.split(".")[0]


def _guards_import_error(handler: ast.ExceptHandler) -> bool:
    names = []
    kinds = handler.type
    for node in (kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]) if kinds is not None else []:
        names.append(node.id if isinstance(node, ast.Name) else getattr(node, "attr", ""))
    return kinds is None or bool({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"} & set(names))


def imports_in(tree: ast.AST) -> list[Import]:
    """Every absolute import in a cell's syntax tree, wherever it is (a pipeline may import inside)."""
    found: list[Import] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Try):
            cover = guarded or any(_guards_import_error(h) for h in node.handlers)
            for child in node.body:
                visit(child, cover)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, guarded)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno, guarded) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(Import(node.module, node.lineno, guarded))
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(tree, False)
    return found


_WRITEFILE = re.compile(r"^\s*%%writefile\s+(?:-a\s+|--append\s+)?(\S+)")


def written_modules(sources: list[str]) -> set[str]:
    """Modules a notebook writes itself (``%%writefile helper.py``), which no requirement provides."""
    names = set()
    for source in sources:
        m = _WRITEFILE.match(source)
        if m and m.group(1).endswith(".py"):
            names.add(m.group(1).rsplit("/", 1)[-1][:-3])
    return names
