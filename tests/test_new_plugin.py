"""``optreg new-plugin``: the template, its renaming, and the command's errors (in process, fast).

The generated plugin's own suite runs, installed from a wheel, in test_wheel_install.py.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import optreg
from optreg.cli import main
from optreg.cli.plugin_commands import PLACEHOLDER, core_requirement, generate_plugin, template_root
from optreg.models import make_model

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "plugins" / "_template"
JUNK = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file() and not (JUNK | {"build", "dist"}) & set(p.relative_to(root).parts)
        and not any(part.endswith((".egg-info", ".pyc")) for part in p.relative_to(root).parts)
    }


def test_the_packaged_template_is_plugins_template() -> None:
    packaged = Path(str(template_root()))
    assert packaged.resolve() == TEMPLATE.resolve(), "optreg/templates/plugin must point at plugins/_template"
    assert _tree(packaged) == _tree(TEMPLATE)
    assert {"pyproject.toml", "README.md", "optreg_myfamily/plugin.py", "tests/conftest.py"} <= set(_tree(TEMPLATE))


def test_the_makefile_does_not_install_the_template() -> None:
    out = subprocess.run(["make", "-s", "-n", "-p", "install"], cwd=ROOT, capture_output=True, text=True).stdout
    plugins_line = next(line for line in out.splitlines() if line.startswith("PLUGINS :="))
    assert "_template" not in plugins_line


@pytest.fixture
def generated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "optreg-acme-two"
    assert main(["new-plugin", "acme_two", "--dir", str(target)]) == 0
    monkeypatch.syspath_prepend(str(target))
    yield target
    for name in [m for m in sys.modules if m.startswith("optreg_acme_two")]:
        del sys.modules[name]


def test_generated_plugin_is_renamed_throughout(generated: Path) -> None:
    files = _tree(generated)
    assert set(files) == {p.replace(PLACEHOLDER, "acme_two") for p in _tree(TEMPLATE)}
    for path, text in files.items():
        assert PLACEHOLDER not in path.lower() and PLACEHOLDER not in text.lower(), f"{path} still says {PLACEHOLDER}"
    pyproject = files["pyproject.toml"]
    assert 'name = "optreg-acme-two"' in pyproject
    assert 'acme_two = "optreg_acme_two.plugin"' in pyproject
    assert f'"{core_requirement()}"' in pyproject
    assert "class AcmeTwoSGDWSpec(" in files["optreg_acme_two/specs.py"]
    assert 'DISTRIBUTION = "optreg-acme-two"' in files["tests/test_conformance.py"]


def test_generated_plugin_registers_its_names(generated: Path) -> None:
    plugin = importlib.import_module("optreg_acme_two.plugin")
    registry = optreg.Registry(entry_points=False)
    info = registry.add_plugin(plugin, name="acme_two", distribution="optreg-acme-two", version="0.1.0")
    assert info.ok, info.error
    assert info.provides["optimizer"] == ["acme_two_sgdw"]
    assert info.provides["scheduler"] == ["acme_two_linear"]
    spec = registry.parse_spec(
        'schema_version = 1\n[optimizer]\ntype = "acme_two_sgdw"\nlr = 0.1\n'
        '[scheduler]\ntype = "acme_two_linear"\nwarmup = 2\nt_max = 10\n'
    )
    built = spec.build(make_model("mlp"))
    assert type(built.optimizer).__name__ == "AcmeTwoSGDW"
    assert built.optimizer.param_groups[0]["lr"] == 0.0  # warmup starts at 0


def test_generated_plugin_is_ruff_clean(generated: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), "."],
        cwd=generated, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_dir_and_next_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["new-plugin", "zed"]) == 0
    assert (tmp_path / "optreg-zed" / "optreg_zed" / "plugin.py").is_file()
    out = capsys.readouterr().out
    assert "created optreg-zed in optreg-zed" in out and "pip install -e '.[test]'" in out


def test_an_empty_existing_dir_is_fine(tmp_path: Path) -> None:
    assert generate_plugin("zed", tmp_path)  # tmp_path exists and is empty
    assert (tmp_path / "pyproject.toml").is_file()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Acme", "must be lower snake case"),
        ("my-family", "must be lower snake case"),
        ("2fast", "must be lower snake case"),
        ("a__b", "must be lower snake case"),
        ("optreg-acme", "without the optreg prefix (e.g. 'acme')"),
        ("optreg_acme", "without the optreg prefix"),
    ],
)
def test_bad_names_exit_2_with_the_rule(name: str, message: str, tmp_path: Path, capsys) -> None:
    assert main(["new-plugin", name, "--dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("optreg: error: ") and message in err
    assert not (tmp_path / "x").exists()


def test_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["new-plugin", "zed", "--dir", str(tmp_path)]) == 2
    assert "already exists and is not an empty directory" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    ("version", "expected"),
    [("0.1.0", "optreg>=0.1,<0.2"), ("0.1.7", "optreg>=0.1,<0.2"), ("1.4.0", "optreg>=1.4,<1.5")],
)
def test_core_requirement_is_the_minor_series(version: str, expected: str) -> None:
    assert core_requirement(version) == expected


def test_core_requirement_admits_the_running_core() -> None:
    from packaging.requirements import Requirement

    assert Requirement(core_requirement()).specifier.contains(optreg.__version__)
