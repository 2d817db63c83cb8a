"""The packages of `app` import one another in one direction only: the store at the bottom (it knows
nothing of search, formats, tiles or pages), search and formats on the store, sky on the store and on formats
(a map readout rebuilds the GeoTIFF reader's transform; formats never import sky), and only the application
(app/__init__.py) and the routes themselves import the routes. Read from the source with `ast`, so that an
import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"

# package -> the app packages (beside itself) it may import
ALLOWED = {
    "store": {"exceptions"},
    "search": {"exceptions", "store"},
    "sky": {"exceptions", "store", "formats"},
    "formats": {"exceptions", "store"},
}


def imported_modules(path: Path) -> set[str]:
    """Every `app.*` name the file imports: modules, and for `from M import N` also `M.N`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found.update(name for name in names if name.startswith("app."))
    return found


def imported_packages(path: Path) -> set[str]:
    """The first component under `app.` of every `app.*` module the file imports."""
    return {name.split(".")[1] for name in imported_modules(path)}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_lower_packages_import_only_what_lies_below_them(package):
    wrong = {}
    for path in sorted((APP / package).rglob("*.py")):
        beyond = imported_packages(path) - ALLOWED[package] - {package}
        if beyond:
            wrong[str(path.relative_to(APP))] = sorted(beyond)
    assert wrong == {}


def test_only_the_application_imports_the_routes():
    importers = [str(path.relative_to(APP)) for path in sorted(APP.rglob("*.py"))
                 if "routes" in imported_packages(path) and path.parent.name != "routes"
                 and path != APP / "__init__.py"]
    assert importers == []


def test_the_checker_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from app.routes import units\n    import app.search.compile\n"
                      "from app.routes.hips import survey_url\n")
    assert imported_packages(sample) == {"routes", "search"}
    assert imported_route_modules(sample) == {"units", "hips"}


# route modules of no page of their own: helpers every page's routes may use
SHARED_ROUTE_MODULES = {"views", "readiness", "zipstream", "schemas"}


def imported_route_modules(path: Path) -> set[str]:
    """The modules of app.routes a file imports (`from app.routes.X import ...`, `import app.routes.X`)."""
    return {name.split(".")[2] for name in imported_modules(path)
            if name.startswith("app.routes.") and len(name.split(".")) > 2}


def test_a_page_routes_import_no_other_page_routes():
    """A page's routes take shared helpers from the shared route modules (or below the routes), never from
    another page's route module."""
    wrong = {}
    for path in sorted((APP / "routes").glob("*.py")):
        if path.name == "__init__.py":  # registers every page's blueprint
            continue
        others = imported_route_modules(path) - SHARED_ROUTE_MODULES - {path.stem}
        if others:
            wrong[path.name] = sorted(others)
    assert wrong == {}


def test_tests_take_their_helpers_from_modules_not_from_conftests():
    """pytest loads a conftest by itself (and may load it under another name): a helper a test module
    imports lives in a helpers module beside it, the conftest holding only fixtures and hooks."""
    tests = Path(__file__).resolve().parent
    importers = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                       else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            if any(module.split(".")[-1] == "conftest" for module in modules):
                importers.append(str(path.relative_to(tests)))
    assert importers == []
