"""`validate`, `groups` and `lr` build a spec on one model, the run's (issue 19, items 5, 6, 7, 11, 12).

Each test runs the command as a user would, through the CLI's entry function.
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

import pytest

from optreg.cli import main

DOCS = Path(__file__).resolve().parents[3] / "docs"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


MLP_SPEC = 'schema_version = 1\n[optimizer]\ntype = "sgd"\n[[optimizer.group_overrides]]\nparams = ["fc1.*"]\n' \
           'lr = 0.01\n[train]\ntask = "mlp"\nsteps = 3\n'


def test_groups_and_lr_use_the_model_of_the_train_task(capsys, tmp_path):
    """One rule: the first example of spec-format.md (task mlp, an override on fc1) works in groups and lr."""
    example = re.search(r"```toml\n(.*?)```", (DOCS / "spec-format.md").read_text(), re.S).group(1)
    spec = write(tmp_path, "run.toml", example)
    code, out, err = run(capsys, "groups", spec)
    assert code == 0 and "fc1.weight" in out and "the model of [train] task 'mlp'" in out, err
    code, out, err = run(capsys, "lr", spec, "--rows", "2")
    assert code == 0 and "override[0]" in out, err
    code, out, _ = run(capsys, "validate", spec)
    assert code == 0 and "built on the model of [train] task 'mlp'" in out


def test_validate_finds_what_train_finds(capsys, tmp_path):
    pytest.importorskip("optreg_schedules")
    warmup = write(tmp_path, "warmup.toml", 'schema_version = 1\n[optimizer]\ntype = "sgd"\n[scheduler]\n'
                   'type = "cos_with_warmup"\nwarmup_steps = 500\n[train]\ntask = "mlp"\nsteps = 100\n')
    code, _, err = run(capsys, "validate", warmup)
    assert code == 2 and err.startswith(f"optreg: error: {warmup}: $.scheduler.warmup_steps: the warmup (500)")
    glob = write(tmp_path, "glob.toml", MLP_SPEC.replace("fc1.*", "blocks.*"))  # a transformer's names, task mlp
    code, _, err = run(capsys, "validate", glob)
    assert code == 2 and "$.optimizer.group_overrides[0].params[0]: glob 'blocks.*'" in err
    assert run(capsys, "validate", glob, "--model", "transformer")[0] == 0


def test_muon_split_sizes_errors_name_the_file_and_the_field(capsys, tmp_path):
    pytest.importorskip("optreg_muon")
    spec = write(tmp_path, "muon.toml", 'schema_version = 1\n[optimizer]\ntype = "muon"\nsplit_sizes = [10, 10]\n'
                 '[train]\ntask = "mlp"\n')
    for command in ("validate", "lr"):
        code, _, err = run(capsys, command, spec)
        assert code == 2 and err.startswith(f"optreg: error: {spec}: $.optimizer.split_sizes: fc1.weight: [10, 10]")


def test_lr_model_from_the_current_directory(capsys, tmp_path, monkeypatch):
    module = f"lrmodels_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "from torch import nn\ndef build():\n    return nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))\n"
    )
    spec = write(tmp_path, "run.toml", MLP_SPEC.replace("fc1.*", "0.*"))
    monkeypatch.chdir(tmp_path)
    try:
        code, out, err = run(capsys, "lr", spec, "--model", f"{module}:build", "--rows", "2")
        assert code == 0 and "override[0]" in out, err
        code, _, err = run(capsys, "lr", spec, "--model", f"{module}:missing")
        assert code == 2 and f"module {module!r}" in err and "has no 'missing'" in err and "Traceback" not in err
    finally:
        sys.modules.pop(module, None)


def test_train_prints_no_header_above_an_error(capsys, tmp_path):
    spec = write(tmp_path, "glob.toml", MLP_SPEC.replace("fc1.*", "nothing.*"))
    code, out, err = run(capsys, "train", spec, "--out", str(tmp_path / "run"), "--no-progress", "--no-plots")
    assert code == 2 and "nothing.*" in err
    assert "training" not in out


def test_user_text_is_not_rich_markup(capsys, tmp_path):
    """A spec named `run[draft].toml` keeps its name in the header and the summary (rich would swallow it)."""
    spec = write(tmp_path, "run[draft].toml", MLP_SPEC)
    out_dir = tmp_path / "out[draft]"
    code, out, err = run(capsys, "train", spec, "--out", str(out_dir), "--no-progress", "--no-plots")
    assert code == 0, err
    assert f"training {spec}: optimizer sgd" in out  # the header: the whole path, on one line
    assert "summary: run[draft]" in out and f"{out_dir}" in out.replace("\n", "")
