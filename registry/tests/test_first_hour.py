"""What a newcomer ran into in their first hour (issue 19), each reproduced as they did it.

Plain tensors and no_decay (1), validate building the spec (5), --model from the current
directory (7), TOML syntax errors (8), suggestions (9), spec classes in Python (10), output
(12, 13) and the Python lookup API (16). The main job's side (the [train] model) is in
plugins/train/tests/test_spec_model.py.
"""

from __future__ import annotations

import json
import sys
import uuid
import warnings
from pathlib import Path
from typing import ClassVar

import attrs
import pytest
import torch
from support import TorchAdamSpec, make_registry, plugin_with
from torch import nn

import optreg
from optreg import FieldTypeError, FieldValueError, OptimizerSpec, ParamNamesWarning, SchedulerSpec, SpecError, field
from optreg.cli import main
from optreg.cli.text import render_table
from optreg.suggest import COMMON_NAMES, suggestions


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def decay_of(opt: torch.optim.Optimizer) -> dict[int, float]:
    return {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}


# ---------------------------------------------------------------- 1: plain tensors


def test_plain_tensors_leave_biases_and_norms_undecayed():
    """`build_optimizer(..., list(model.parameters()))`, as a torch user writes it: 1-D tensors (biases, norm
    weights) get no decay by shape; before, everything was decayed without a word."""
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    for params in (list(model.parameters()), model.parameters()):
        opt = optreg.build_optimizer({"type": "sgd", "weight_decay": 0.1, "no_decay": ["bias"]}, params)
        decay = decay_of(opt)
        assert decay[id(model[0].weight)] == 0.1 and decay[id(model[2].weight)] == 0.1
        assert decay[id(model[0].bias)] == 0.0 and decay[id(model[1].weight)] == 0.0


def test_plain_tensors_warn_when_no_decay_needs_names():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4))
    asked = {"type": "sgd", "weight_decay": 0.1, "no_decay": ["bias", "embedding"]}
    with pytest.warns(ParamNamesWarning, match="'embedding'.*without names.*named_parameters"):
        optreg.build_optimizer(asked, model.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optreg.build_optimizer(asked, model)  # names: nothing to warn about
        optreg.build_optimizer({**asked, "weight_decay": 0.0}, model.parameters())  # no decay: nothing is missed
        optreg.build_optimizer({"type": "sgd", "weight_decay": 0.1}, model.parameters())  # the default: documented
        opt = optreg.build_optimizer({"type": "sgd", "weight_decay": 0.1}, model.named_parameters())
    assert decay_of(opt)[id(model[0].weight)] == 0.1  # `0.weight` is no embedding by name; the module says so


def test_named_pairs_find_embeddings_norms_and_the_head():
    emb, norm, head = nn.Parameter(torch.randn(10, 4)), nn.Parameter(torch.ones(4)), nn.Parameter(torch.randn(3, 4))
    pairs = [("tok_emb.weight", emb), ("blocks.0.ln_1.weight", norm), ("lm_head.weight", head)]
    opt = optreg.build_optimizer({"type": "sgd", "weight_decay": 0.1, "no_decay": ["embedding", "norm", "head"]},
                                 pairs)
    assert set(decay_of(opt).values()) == {0.0}


def test_roles_and_overrides_with_plain_tensors_are_errors():
    params = list(nn.Linear(4, 4).parameters())
    with pytest.raises(SpecError, match="roles need parameter names") as info:
        optreg.build_optimizer({"type": "sgd", "roles": {"head": ["*"]}}, params)
    assert info.value.path == "$.roles"
    with pytest.raises(SpecError, match="group_overrides need parameter names"):
        optreg.build_optimizer({"type": "sgd", "group_overrides": [{"params": ["*"], "lr": 0.1}]}, params)


# ---------------------------------------------------------------- 5: validate builds the spec


def test_validate_reports_a_glob_that_matches_nothing(capsys, tmp_path):
    file = write(tmp_path, "glob.toml", 'schema_version = 1\n[optimizer]\ntype = "sgd"\n'
                 '[[optimizer.group_overrides]]\nparams = ["nothing.*"]\nlr = 0.1\n')
    code, out, err = run(capsys, "validate", file)
    assert code == 2 and out == ""
    assert err.startswith(f"optreg: error: {file}: $.optimizer.group_overrides[0].params[0]: glob 'nothing.*'")
    assert run(capsys, "validate", file, "--model", "mlp")[0] == 2


@attrs.frozen(kw_only=True)
class ShapeCheckedSpec(OptimizerSpec):
    """An optimizer whose constructor rejects an option that does not fit a parameter (as Muon's split_sizes)."""

    TYPE: ClassVar[str] = "shape_checked"
    lr: float = field(0.1, ge=0)
    rows: int = field(0, ge=0, doc="Rows every matrix must have (0: any).")

    def create(self, param_groups, context):
        for group in param_groups:
            want = group.get("rows", self.rows)
            for _, p in group["params"]:
                if want and p.ndim == 2 and p.shape[0] != want:
                    raise FieldValueError("rows", f"{want} does not fit shape {tuple(p.shape)}")
        return torch.optim.SGD([{k: v for k, v in g.items() if k != "rows"} for g in param_groups], lr=self.lr)


def test_an_option_the_optimizer_rejects_is_reported_at_its_path():
    reg = make_registry(plugin_with(ShapeCheckedSpec, tables=False))
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    spec = reg.parse_spec({"optimizer": {"type": "shape_checked", "rows": 3}}, file="run.toml")
    with pytest.raises(SpecError) as info:
        spec.build_in_process(model)
    assert (info.value.file, info.value.path) == ("run.toml", "$.optimizer.rows")
    assert "3 does not fit shape (8, 4)" in info.value.message
    spec = reg.parse_spec({"optimizer": {"type": "shape_checked", "group_overrides": [{"params": ["1.*"], "rows": 3}]}})
    with pytest.raises(SpecError) as info:
        spec.build_in_process(model)
    assert info.value.path == "$.optimizer.group_overrides[0].rows"


# ---------------------------------------------------------------- 7: --model from the current directory


def test_model_factory_from_the_current_directory(capsys, tmp_path, monkeypatch):
    module = f"mymodels_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "from torch import nn\n"
        "def mlp():\n    return nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))\n"
        "def broken():\n    raise RuntimeError('no weights here')\n"
    )
    spec = write(tmp_path, "run.toml", 'schema_version = 1\n[optimizer]\ntype = "sgd"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        code, out, err = run(capsys, "groups", spec, "--model", f"{module}:mlp")
        assert code == 0 and "1.weight" in out and f"of {module}:mlp" in out, err
        for factory, words in (("nope", "has no 'nope'; its callables: broken, mlp"),
                               ("broken", "calling broken() failed: RuntimeError: no weights here")):
            code, out, err = run(capsys, "groups", spec, "--model", f"{module}:{factory}")
            assert code == 2 and words in err and "Traceback" not in err and err.count("\n") == 1
        code, _, err = run(capsys, "validate", spec, "--model", "not_a_module_here:build")
        assert code == 2 and "no module named 'not_a_module_here' in the current directory" in err
    finally:
        sys.modules.pop(module, None)


# ---------------------------------------------------------------- 8: TOML syntax errors


def test_toml_errors_quote_the_line(capsys, tmp_path):
    unclosed = write(tmp_path, "unclosed.toml", '[optimizer]\ntype = "sgd"\nbetas = [0.9, 0.95\nlr = 1\n')
    code, _, err = run(capsys, "validate", unclosed)
    assert code == 2 and "line 4" in err and "the array opened at line 3 ('betas = [0.9, 0.95')" in err
    assert "4 | lr = 1" in err
    twice = write(tmp_path, "twice.toml", '[optimizer]\ntype = "sgd"\nlr = 1\nmomentum = 0.9\nlr = 2\n')
    code, _, err = run(capsys, "validate", twice)
    assert code == 2 and "key 'lr' is set twice (first at line 3)" in err and "5 | lr = 2" in err
    tables = write(tmp_path, "tables.toml", '[optimizer]\ntype = "sgd"\n[optimizer]\nlr = 1\n')
    assert "[optimizer] appears twice" in run(capsys, "validate", tables)[2]


# ---------------------------------------------------------------- 9: suggestions


@attrs.frozen(kw_only=True)
class WarmupSchedule(SchedulerSpec):
    """A schedule with a warmup, so `warmup_steps` under [optimizer] has somewhere to belong."""

    TYPE: ClassVar[str] = "cos_with_warmup"
    warmup_steps: int = field(0, ge=0)

    def get_lr(self, initial_lr, current, t_max):
        return initial_lr


def _with_schedule() -> optreg.Registry:
    @optreg.hookimpl
    def optreg_register_schedulers(register) -> None:
        register(WarmupSchedule)

    import types

    return make_registry(types.SimpleNamespace(__name__="sched", optreg_register_schedulers=optreg_register_schedulers))


def test_suggestions_for_what_people_type():
    reg = _with_schedule()
    with pytest.raises(SpecError) as info:
        reg.parse_spec({"optimizer": {"type": "TorchAdam", "lr": 0.1}, "scheduler": {"type": "cosine"}})
    messages = dict(info.value.errors)
    assert "(did you mean 'torch_adam'?)" in messages["$.optimizer.type"]
    assert "(did you mean 'cos_with_warmup'?)" in messages["$.scheduler.type"]
    with pytest.raises(SpecError) as info:
        reg.parse_spec({"optimizer": {"type": "torch_adam", "learning_rate": 0.1, "warmup_steps": 10}})
    messages = dict(info.value.errors)
    assert "(did you mean 'lr'?)" in messages["$.optimizer.learning_rate"]
    assert "it is an option of [scheduler]" in messages["$.optimizer.warmup_steps"]
    assert suggestions("AdamW", ["adam", "adamw"]) == ["adamw"]
    assert suggestions("linear", ["linear_with_warmup", "single"], COMMON_NAMES["scheduler"]) == ["linear_with_warmup"]


def test_show_suggests_from_the_kind_the_name_belongs_to():
    from optreg.describe import unknown_name

    reg = _with_schedule()
    message = unknown_name(reg, "cosine")
    assert "did you mean the scheduler 'cos_with_warmup'" in message and "single" not in message
    assert "did you mean the optimizer 'sgd'" in unknown_name(reg, "SGD")


# ---------------------------------------------------------------- 10: spec classes in Python


def test_spec_classes_check_types_in_python():
    with pytest.raises(FieldTypeError, match=r"^lr: expected a number, got the string '1e-3'") as info:
        TorchAdamSpec(lr="1e-3")
    assert isinstance(info.value, TypeError) and info.value.field == "lr"
    with pytest.raises(FieldTypeError, match=r"betas\[1\]: expected a number"):
        TorchAdamSpec(betas=(0.9, "0.99"))
    with pytest.raises(FieldTypeError, match="amsgrad: expected true or false"):
        attrs.evolve(TorchAdamSpec(), amsgrad=1)
    with pytest.raises(FieldValueError, match=r"^lr: must be >= 0, got -1.0$"):
        TorchAdamSpec(lr=-1.0)
    assert TorchAdamSpec(betas=[0.8, 0.9], lr=1).betas == (0.8, 0.9)  # lists become tuples; ints are numbers


# ---------------------------------------------------------------- 13: output people read


def test_help_says_what_file_is(capsys):
    for command in ("validate", "groups"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "spec file" in capsys.readouterr().out


def test_a_narrow_last_column_goes_under_its_row():
    text = "Row blocks orthogonalized separately (e.g. [d, d, d] for a fused QKV weight)."
    out = render_table(("field", "type", "default", "valid", "description"),
                       [("split_sizes", "an array of integers " * 3, "[]" * 20, ">= 1", text)], width=100)
    assert f"    {text}" in out.splitlines()


# ---------------------------------------------------------------- 16: describe()


def test_describe_is_show_json(capsys):
    code, out, _ = run(capsys, "show", "sgd", "--json")
    assert code == 0 and json.loads(out) == optreg.describe("sgd")
    fields = {row["name"]: row for row in optreg.describe("sgd", kind="optimizer")[0]["fields"]}
    assert fields["momentum"]["bounds"] == ">= 0, < 1" and fields["momentum"]["doc"]
    assert optreg.describe("SGD") == optreg.describe("sgd")  # a name found ignoring case
    with pytest.raises(LookupError, match="did you mean the optimizer 'sgd'"):
        optreg.describe("sgdd")
