"""The package's layers (docs/architecture.md): a module imports only from its own package or
from a lower layer, never from a higher one, and no modules import each other in a cycle.

    0  client, settings, version   the API client; the configuration; what this build is
    1  runtime, envtest            controller machinery; the local control plane
    2  apptask                     what an AppTask means
    3  serving                     metrics, probes, their HTTP(S) server
    4  the top-level modules       cli, runner, controller, reconciler, logs, crds, local

Packages of one layer do not import each other (client and settings stand apart). Every import
counts, those inside functions and `if TYPE_CHECKING:` blocks too.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ssa_controller"
LAYERS = {"client": 0, "settings": 0, "version": 0, "runtime": 1, "envtest": 1, "apptask": 2,
          "serving": 3}
TOP = 4


def module_name(root: Path, path: Path) -> str:
    parts = ["ssa_controller", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(root, path): path for path in root.rglob("*.py")}


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The ssa_controller modules `path` imports (a name imported from a package counts as its
    module when it is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("ssa_controller"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not source.startswith("ssa_controller"):
                continue
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                yield candidate if candidate in known else source


def rank(module: str) -> tuple[str, int]:
    """The module's unit (its package below ssa_controller, or the top-level module) and layer."""
    parts = module.split(".")
    unit = parts[1] if len(parts) > 1 else "ssa_controller"
    return unit, LAYERS.get(unit, TOP)


@functools.cache
def graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    return {name: set(imports(name, path, known)) - {name} for name, path in known.items()}


def test_every_module_belongs_to_a_known_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == {"client", "runtime", "apptask", "serving", "settings", "envtest"}


@pytest.mark.parametrize("module", sorted(modules(PACKAGE)))
def test_no_module_imports_a_higher_layer_or_a_sibling_package(module: str) -> None:
    unit, layer = rank(module)
    wrong = []
    for imported in sorted(graph(PACKAGE)[module]):
        other, other_layer = rank(imported)
        if other == unit or other == "ssa_controller" and imported == "ssa_controller":
            continue
        if other_layer > layer or (other_layer == layer and layer != TOP):
            wrong.append(f"{imported} (layer {other_layer})")
    assert not wrong, f"{module} (layer {layer}) imports {', '.join(wrong)}"


def test_no_import_cycles() -> None:
    edges = graph(PACKAGE)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for imported in sorted(edges.get(module, ())):
            if state.get(imported) == 1:
                cycle = path[path.index(imported):] + [imported]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if imported in edges and state.get(imported) is None:
                visit(imported)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if state.get(module) is None:
            visit(module)


def test_the_check_sees_a_back_arrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above would fail on the back-arrows the layout removed (metrics importing the
    reconciler's Outcome, config importing the leader's jitter factor)."""
    assert rank("ssa_controller.reconciler")[1] > rank("ssa_controller.serving.metrics")[1]
    assert rank("ssa_controller.runtime.leader")[1] > rank("ssa_controller.settings.config")[1]
    fake = tmp_path / "ssa_controller"
    (fake / "serving").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "reconciler.py").write_text("")
    (fake / "serving" / "__init__.py").write_text("")
    (fake / "serving" / "metrics.py").write_text("from ..reconciler import Outcome\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    with pytest.raises(AssertionError, match="layer 4"):
        test_no_module_imports_a_higher_layer_or_a_sibling_package("ssa_controller.serving.metrics")
