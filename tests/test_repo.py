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


def test_loading_every_plugin_imports_neither_dynamo_nor_triton():
    """Plugins are loaded by every ``optreg`` command and by every plugin's test run: importing
    torch._dynamo there costs each command its start-up time, and imports triton before a suite
    can set TRITON_INTERPRET (the muon suite's Triton tests then fail)."""
    import subprocess

    code = ("import sys, optreg; r = optreg.get_registry(); assert not r.failed_plugins, r.failed_plugins; "
            "print(sorted(m for m in ('torch._dynamo', 'triton') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
