"""Repository rules that keep `make test` and `make demo` honest from a fresh clone."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import optreg

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml") if not p.parent.name.startswith("_"))


def test_readme_shows_the_two_commands_and_ci_runs_make_test():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_core_declares_lower_bounds_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = next(r for r in project["dependencies"] if r.startswith("torch"))
    assert ">=" in torch_req and "==" not in torch_req and "<" not in torch_req.replace("<=", "")


@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.name for p in PLUGINS])
def test_plugin_layout(plugin):
    project = tomllib.loads((plugin / "pyproject.toml").read_text())["project"]
    family = plugin.name
    assert project["name"] == f"optreg-{family}"
    assert (plugin / f"optreg_{family}" / "__init__.py").exists()
    assert list((plugin / "tests").glob("test_*.py")), f"{family} has no test suite"
    conftest = (plugin / "tests" / "conftest.py").read_text()
    assert "optreg.testing.plugin" in conftest, "plugin suites opt into the conformance kit"
    entry_points = project["entry-points"]["optreg"]
    assert entry_points, "registered through the `optreg` entry point group"
    deps = project["dependencies"]
    assert any(re.match(r"optreg\s*[<>=!~]", d) for d in deps), "declares the core versions it supports"
    for dep in deps:
        if dep.startswith("torch"):
            assert "==" not in dep, f"{family} pins torch ({dep}); declare a lower bound"
    assert "test" in project.get("optional-dependencies", {}), f"{family} has no [test] extra"


def test_every_installed_plugin_loads():
    registry = optreg.Registry()
    assert not registry.failed_plugins, [(p.name, p.error) for p in registry.failed_plugins]
    loaded = {p.distribution for p in registry.plugins if p.ok}
    for plugin in PLUGINS:
        assert f"optreg-{plugin.name}" in loaded, f"optreg-{plugin.name} is not installed or not loaded"


#: What a plugin package may hold at its top level (see docs/writing-plugins.md, "One shape for every plugin").
SHAPE_REQUIRED = ("__init__.py", "specs", "plugin")
SHAPE_ALLOWED = ("__init__.py", "specs", "plugin", "optim", "functional", "strategies", "py.typed")


def _entries(package: Path) -> dict[str, Path]:
    """Top-level modules and subpackages of a package, by stem (``specs`` for specs.py or specs/)."""
    out = {}
    for entry in package.iterdir():
        if entry.name in ("__pycache__",) or entry.name.endswith(".egg-info"):
            continue
        if entry.is_dir() and (entry / "__init__.py").exists():
            out[entry.name] = entry
        elif entry.suffix == ".py" or entry.name == "py.typed":
            out[entry.stem if entry.suffix == ".py" and entry.name != "__init__.py" else entry.name] = entry
    return out


def check_plugin_shape(root: Path, package_name: str) -> list[str]:
    """What breaks the one plugin shape in the package ``root / package_name`` (an empty list when none)."""
    import ast

    package = root / package_name
    entries = _entries(package)
    problems = [f"{package_name}: missing {name}" for name in SHAPE_REQUIRED if name not in entries]
    for name in entries:
        if name not in SHAPE_ALLOWED and not name.startswith("_"):
            problems.append(
                f"{package_name}: `{name}` is not part of the shape (specs, optim, functional, strategies, "
                "plugin; private helpers start with `_`)"
            )
    plugin = (package / "plugin.py").read_text() if (package / "plugin.py").exists() else ""
    tree = ast.parse(plugin)
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    if plugin and "ALL_SPECS" not in plugin:
        problems.append(f"{package_name}/plugin.py does not register specs.ALL_SPECS")
    top_level_torch = {m for m in imported if m.split(".")[0] == "torch"}
    if top_level_torch:
        problems.append(f"{package_name}/plugin.py imports torch ({sorted(top_level_torch)})")
    return problems


def _is_command_plugin(plugin: Path) -> bool:
    """A plugin that adds commands and tables only (the main job), not algorithms."""
    text = (plugin / f"optreg_{plugin.name}" / "plugin.py").read_text()
    return not re.search(r"optreg_register_(optimizers|schedulers|parallelism_strategies)", text)


@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.name for p in PLUGINS])
def test_every_plugin_has_the_one_shape(plugin):
    if _is_command_plugin(plugin):
        entries = _entries(plugin / f"optreg_{plugin.name}")
        assert {"__init__.py", "specs", "plugin"} <= set(entries) or {"__init__.py", "plugin"} <= set(entries)
        return
    assert not check_plugin_shape(plugin, f"optreg_{plugin.name}")


def test_a_generated_plugin_has_the_one_shape(tmp_path):
    from optreg.cli import main

    assert main(["new-plugin", "shape_probe", "--dir", str(tmp_path / "optreg-shape-probe")]) == 0
    assert not check_plugin_shape(tmp_path / "optreg-shape-probe", "optreg_shape_probe")


def test_the_shape_check_catches_a_plugin_off_the_shape(tmp_path):
    package = tmp_path / "optreg_off"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text("import torch\n")
    (package / "helpers.py").write_text("")
    problems = check_plugin_shape(tmp_path, "optreg_off")
    assert any("missing specs" in p for p in problems)
    assert any("`helpers` is not part of the shape" in p for p in problems)
    assert any("ALL_SPECS" in p for p in problems) and any("imports torch" in p for p in problems)


@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.name for p in PLUGINS])
def test_specs_and_plugin_modules_import_no_torch(plugin):
    """``specs`` and ``plugin`` are what the registry imports: without torch they keep ``optreg list`` fast."""
    import subprocess

    package = f"optreg_{plugin.name}"
    code = (f"import sys, {package}.plugin, {package}.specs; "
            "print(sorted(m for m in ('torch', 'numpy', 'triton', 'rich', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"importing {package}.plugin / .specs imports {out.strip()}"


def test_building_the_registry_imports_no_torch():
    """`optreg list`, `show`, `validate`, `schema`, `plugins` and get_registry() need no torch (nor triton,
    dynamo, numpy): the registry loads every plugin's `plugin` and `specs` modules only."""
    import subprocess

    code = ("import sys, optreg; r = optreg.get_registry(); assert not r.failed_plugins, r.failed_plugins; "
            "r.converter; import optreg.cli; optreg.cli.build_parser(r); "
            "print(sorted(m for m in ('torch', 'numpy', 'triton', 'torch._dynamo', 'rich', 'matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_loading_every_plugin_imports_neither_dynamo_nor_triton():
    """Plugins are loaded by every ``optreg`` command and by every plugin's test run: importing
    torch._dynamo there costs each command its start-up time, and imports triton before a suite
    can set TRITON_INTERPRET (the muon suite's Triton tests then fail)."""
    import subprocess

    code = ("import sys, optreg; r = optreg.get_registry(); assert not r.failed_plugins, r.failed_plugins; "
            "print(sorted(m for m in ('torch._dynamo', 'triton') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
