"""The optreg command line: every subcommand, exit codes, one clear message and never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from optreg.cli import main

ACCEPTANCE = {
    'lr = "1e-3"': ("$.optimizer.lr", "expected a number"),
    'foreach = "false"': ("$.optimizer.foreach", "expected true or false"),
    "lrr = 2": ("$.optimizer.lrr", "did you mean 'lr'"),
    'type = "sgdd"': ("$.optimizer.type", "registered: "),
    "momentum = [0.9]": ("$.optimizer.momentum", "expected a number, got an array"),
}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("line", list(ACCEPTANCE))
def test_validate_rejects_with_file_path_and_what_is_valid(capsys, tmp_path, line):
    text = '[optimizer]\ntype = "sgd"\n' + line + "\n"
    if line.startswith("type"):
        text = "[optimizer]\n" + line + "\n"
    file = write(tmp_path, "bad.toml", text)
    code, _, err = run(capsys, "validate", file)
    path, hint = ACCEPTANCE[line]
    assert code == 2
    assert err.startswith(f"optreg: error: {file}: {path}: ")
    assert hint in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_validate_many_files(capsys, tmp_path):
    good = write(tmp_path, "good.toml", '[optimizer]\ntype = "sgd"\nlr = 0.1\n')
    bad = write(tmp_path, "bad.toml", '[optimizer]\ntype = "sgd"\nlr = -0.1\n')
    code, out, err = run(capsys, "validate", good, bad)
    assert code == 2 and f"{good}: ok (optimizer sgd" in out and "must be >= 0" in err
    assert run(capsys, "validate", good)[0] == 0


def test_list_and_plugins(capsys):
    code, out, _ = run(capsys, "list", "--json")
    data = json.loads(out)
    row = next(r for r in data["names"] if r["name"] == "sgd")
    assert code == 0 and row["plugin"] == "builtins" and row["distribution"] == "optreg"
    code, out, _ = run(capsys, "list")
    assert code == 0 and "sgd" in out and "constant" in out and "single" in out
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 0 and any(p["name"] == "builtins" and p["error"] is None for p in json.loads(out))
    code, out, _ = run(capsys, "plugins")
    assert code == 0 and "builtins" in out


def test_show(capsys):
    code, out, _ = run(capsys, "show", "sgd", "--json")
    entry = json.loads(out)[0]
    fields = {f["name"]: f for f in entry["fields"]}
    assert code == 0 and entry["kind"] == "optimizer" and "torch.optim.SGD" in entry["doc"]
    assert fields["momentum"]["bounds"] == ">= 0, < 1" and fields["momentum"]["default"] == "0.0"
    assert fields["foreach"]["per_group"] is False
    code, out, _ = run(capsys, "show", "sgd")
    assert code == 0 and "momentum" in out
    code, _, err = run(capsys, "show", "sgdd")
    assert code == 2 and "did you mean the optimizer 'sgd'" in err


def test_schema_validates_good_specs_and_rejects_bad_ones(capsys, tmp_path):
    out_file = tmp_path / "schema.json"
    code, _, _ = run(capsys, "schema", "-o", str(out_file))
    schema = json.loads(out_file.read_text())
    assert code == 0
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    good = {"optimizer": {"type": "sgd", "lr": 0.1, "group_overrides": [{"params": ["a.*"], "lr": 0.01}]},
            "scheduler": {"type": "constant"}}
    assert not list(validator.iter_errors(good))
    for bad in (
        {"optimizer": {"type": "sgd", "lrr": 0.1}},
        {"optimizer": {"type": "sgd", "momentum": 1.5}},
        {"optimizer": {"type": "sgdd"}},
        {"optimizer": {"type": "sgd", "group_overrides": [{"params": ["a"], "foreach": True}]}},
        {"optimizer": {"type": "sgd"}, "not_a_table": {"steps": 1}},
    ):
        assert list(validator.iter_errors(bad)), bad
    code, out, _ = run(capsys, "schema")
    assert json.loads(out) == schema


def test_groups(capsys, tmp_path):
    file = write(tmp_path, "run.toml", '[optimizer]\ntype = "sgd"\nweight_decay = 0.1\n'
                 '[[optimizer.group_overrides]]\nparams = ["lm_head.*"]\nlr = 0.5\n')
    code, out, _ = run(capsys, "groups", file, "--json")
    rows = {r["param"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["lm_head.weight"]["role"] == "head" and rows["lm_head.weight"]["options"]["lr"] == 0.5
    assert rows["ln_f.bias"]["options"]["weight_decay"] == 0.0
    plain = write(tmp_path, "plain.toml", '[optimizer]\ntype = "sgd"\n')
    code, out, _ = run(capsys, "groups", plain, "--model", "mlp")
    assert code == 0 and "fc1.weight" in out and "head" in out
    bad = write(tmp_path, "bad.toml", '[optimizer]\ntype = "sgd"\n[[optimizer.group_overrides]]\n'
                'params = ["nothing.*"]\nlr = 0.5\n')
    code, _, err = run(capsys, "groups", bad)
    assert code == 2 and "$.optimizer.group_overrides[0].params[0]" in err and bad in err
    code, _, err = run(capsys, "groups", file, "--model", "resnet")
    assert code == 2 and "unknown model 'resnet'" in err


def test_console_script_exits_2_without_traceback(tmp_path):
    file = write(tmp_path, "bad.toml", "[optimizer\n")
    proc = subprocess.run([sys.executable, "-m", "optreg", "validate", file], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "TOML syntax error at line 1" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "optreg", "validate", str(tmp_path / "none.toml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "file not found" in proc.stderr
