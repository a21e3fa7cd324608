"""Import rules of ``metarec_ref``, read from the source with ``ast`` (nothing is imported).

Layers, bottom to top; imports only flow upwards:

- ``batch``, ``runtime``, ``numerics``: the ground, importing nothing of the package;
- ``meta``, ``models``, ``data``: side by side, blind to each other;
- ``eval``, then ``train``;
- ``recipes``, ``book``: on top.

Further rules: no private name crosses a module boundary, and imports inside functions are kept
for optional third-party dependencies (``LAZY_OK``).
"""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "metarec_ref"

GROUND = {"batch", "runtime", "numerics"}
PEERS = {"meta", "models", "data"}
TOP = {"recipes", "book"}
ROOT = ""  # the layer of ``metarec_ref/__init__.py``: every import of the package runs it

# What each layer may import (its own layer included). Everything else is a forbidden arrow.
ALLOWED: dict[str, set[str]] = {
    "batch": set(),
    "runtime": set(),
    "numerics": set(),
    ROOT: GROUND,
    "meta": {ROOT, *GROUND, "meta"},
    "models": {ROOT, *GROUND, "models"},
    "data": {ROOT, *GROUND, "data"},
    "eval": {ROOT, *GROUND, *PEERS, "eval"},
    "train": {ROOT, *GROUND, *PEERS, "eval", "train"},
    "recipes": {ROOT, *GROUND, *PEERS, "eval", "train", *TOP},
    "book": {ROOT, *GROUND, *PEERS, "eval", "train", *TOP},
}

# Third-party modules a function may import lazily: each is absent from some install of the library.
LAZY_OK: dict[str, str] = {
    "myst_nb": "the book's glue; myst_nb exists only where the book is built",
}


# ----------------------------------------------------------------------------------------- checker


def module_name(path: Path, package_root: Path) -> str:
    parts = path.relative_to(package_root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str, package: str) -> str | None:
    """``metarec_ref.eval.paired`` -> ``eval``; the package itself -> ROOT; not a layer -> None."""
    if module == package:
        return ROOT
    top = module.split(".")[1]
    return top if top in ALLOWED else None


def resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` reads from (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]):
    """(target module, imported name or None) for each name of an import statement.

    ``from pkg import sub`` targets ``pkg.sub`` when that is a module of the package, so that
    ``from metarec_ref import data`` counts as an arrow to ``data``.
    """
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    source = resolve(node, module, is_package)
    out = []
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        out.append((sub, None) if sub in known else (source, alias.name))
    return out


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def function_scoped(tree: ast.AST) -> set[ast.AST]:
    """Import statements that run when a function is called, not when the module is imported."""
    inner = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner.update(n for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return inner


def violations(package_root: Path) -> list[str]:
    """Every broken import rule under ``package_root``, as ``file:line: rule (detail)``."""
    package = package_root.name
    files = sorted(package_root.rglob("*.py"))
    known = {module_name(f, package_root) for f in files}
    found = []
    for path in files:
        module = module_name(path, package_root)
        is_package = path.name == "__init__.py"
        where = path.relative_to(package_root.parent).as_posix()
        layer = layer_of(module, package)
        if layer is None:
            found.append(f"{where}:1: {module} belongs to no layer (add it to one in test_import_rules.py)")
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        lazy = function_scoped(tree)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            at = f"{where}:{node.lineno}"
            for target, name in imported_modules(node, module, is_package, known):
                top = target.split(".")[0]
                ours = top == package
                if ours:
                    to = layer_of(target, package)
                    if to not in ALLOWED[layer]:
                        shown = "the package root" if to == ROOT else (to or target)
                        who = "the package root" if layer == ROOT else layer
                        found.append(f"{at}: {who} must not import {shown} ({target})")
                    if name and is_private(name) and target != module:
                        found.append(f"{at}: private name {name} imported from {target}")
                if node in lazy:
                    if ours:
                        found.append(f"{at}: in-function import of {target}; import it at module level")
                    elif top != "__future__" and top not in LAZY_OK:
                        kind = "standard library" if top in sys.stdlib_module_names else "third-party"
                        found.append(f"{at}: in-function import of {kind} module {target}, not in LAZY_OK")
    unique = dict.fromkeys(found)  # one line per statement and rule
    return sorted(unique, key=lambda line: (line.split(":")[0], int(line.split(":")[1])))


# ----------------------------------------------------------------------------------- the real package


def test_package_has_no_forbidden_imports():
    found = violations(PACKAGE_ROOT)
    assert not found, "import rules broken:\n" + "\n".join(found)


def test_lazy_allow_list_is_still_needed():
    """An optional dependency no function imports any more leaves the list, so it stays short."""
    lazy = set()
    for path in PACKAGE_ROOT.rglob("*.py"):
        for node in function_scoped(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            lazy.update(n.split(".")[0] for n in names)
    assert not LAZY_OK.keys() - lazy, f"LAZY_OK lists modules no function imports: {sorted(LAZY_OK.keys() - lazy)}"


# ------------------------------------------------------------------ the checker on a synthetic package


def write_package(root: Path, files: dict[str, str]) -> Path:
    """A package ``metarec_ref`` under ``root`` with every layer present and ``files`` on top."""
    pkg = root / "metarec_ref"
    base = {"__init__.py": "", "batch.py": "", "runtime.py": ""}
    for layer in sorted(ALLOWED.keys() - GROUND - {ROOT}):
        base[f"{layer}/__init__.py"] = ""
        base[f"{layer}/x.py"] = "def _hidden():\n    pass\n"
    for rel, text in {**base, **files}.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return pkg


def only(found: list[str], fragment: str, where: str) -> None:
    assert len(found) == 1, found
    assert found[0].startswith(where + ":") and fragment in found[0], found


FORBIDDEN_ARROWS = [
    (importer, target)
    for importer, allowed in ALLOWED.items()
    if importer not in GROUND | {ROOT}
    for target in sorted(ALLOWED.keys() - allowed - GROUND - {ROOT})
]


@pytest.mark.parametrize(("importer", "target"), FORBIDDEN_ARROWS)
def test_forbidden_layer_arrow_is_reported(tmp_path, importer, target):
    pkg = write_package(tmp_path, {f"{importer}/y.py": f"\n\nfrom metarec_ref.{target}.x import f\n"})
    only(violations(pkg), f"{importer} must not import {target}", f"metarec_ref/{importer}/y.py:3")


@pytest.mark.parametrize("ground", sorted(GROUND))
def test_ground_imports_nothing_of_the_package(tmp_path, ground):
    other = (GROUND - {ground}).pop()
    pkg = write_package(tmp_path, {f"{ground}.py": f"import metarec_ref.{other}\nfrom metarec_ref import __version__\n"})
    found = violations(pkg)
    assert len(found) == 2, found
    assert f"metarec_ref/{ground}.py:1: {ground} must not import {other}" in found[0]
    assert f"metarec_ref/{ground}.py:2: {ground} must not import the package root" in found[1]


def test_package_root_imports_only_the_ground(tmp_path):
    pkg = write_package(tmp_path, {"__init__.py": "from metarec_ref import batch\nfrom metarec_ref.train import x\n"})
    only(violations(pkg), "the package root must not import train", "metarec_ref/__init__.py:2")


def test_allowed_arrows_are_not_reported(tmp_path):
    pkg = write_package(tmp_path, {
        "__init__.py": "from metarec_ref.batch import TaskBatch\n",
        "meta/y.py": "import torch\nfrom metarec_ref.batch import TaskBatch\nfrom metarec_ref.runtime import seed\n"
                     "from metarec_ref.meta.x import f\nfrom . import x\nfrom .x import f\n",
        "eval/y.py": "from metarec_ref.data.x import f\nfrom metarec_ref.models import x\nfrom ..meta.x import f\n",
        "train/y.py": "from metarec_ref.eval.x import f\nfrom metarec_ref import meta\n",
        "recipes/y.py": "from metarec_ref.book.x import f\nfrom metarec_ref.train.x import f\n",
        "book/y.py": "from metarec_ref.recipes.x import f\n",
        "book/z.py": "def g():\n    from myst_nb import glue\n    import myst_nb.ext\n",
    })
    assert violations(pkg) == []


def test_relative_imports_are_resolved(tmp_path):
    pkg = write_package(tmp_path, {
        "meta/y.py": "from ..data import x\n",
        "models/__init__.py": "from .. import eval\n",
        "data/y.py": "from ..train.x import f\n",
    })
    found = violations(pkg)
    assert len(found) == 3, found
    assert "metarec_ref/data/y.py:1: data must not import train (metarec_ref.train.x)" in found[0]
    assert "metarec_ref/meta/y.py:1: meta must not import data (metarec_ref.data.x)" in found[1]
    assert "metarec_ref/models/__init__.py:1: models must not import eval (metarec_ref.eval)" in found[2]


@pytest.mark.parametrize("statement", ["from metarec_ref.eval.x import _hidden", "from .x import _hidden"])
def test_private_name_across_modules_is_reported(tmp_path, statement):
    pkg = write_package(tmp_path, {"eval/y.py": f"{statement}\nfrom .x import __doc__\n"})
    only(violations(pkg), "private name _hidden imported from metarec_ref.eval.x", "metarec_ref/eval/y.py:1")


def test_in_function_import_of_the_package_is_reported(tmp_path):
    pkg = write_package(tmp_path, {"train/y.py": "def run():\n    from metarec_ref.eval.x import f\n"})
    only(violations(pkg), "in-function import of metarec_ref.eval.x", "metarec_ref/train/y.py:2")


@pytest.mark.parametrize(("module", "kind"), [("pandas", "third-party"), ("json", "standard library")])
def test_in_function_import_outside_the_allow_list_is_reported(tmp_path, module, kind):
    pkg = write_package(tmp_path, {"book/y.py": f"class A:\n    def f(self):\n        import {module}\n"})
    only(violations(pkg), f"in-function import of {kind} module {module}", "metarec_ref/book/y.py:3")


def test_module_outside_the_layers_is_reported(tmp_path):
    pkg = write_package(tmp_path, {"utils.py": "import torch\n"})
    only(violations(pkg), "metarec_ref.utils belongs to no layer", "metarec_ref/utils.py:1")
