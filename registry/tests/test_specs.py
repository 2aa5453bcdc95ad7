"""Specs: strict structuring, error paths and messages, round trips, nested specs, group overrides."""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import pytest
from support import IntsAndChoicesSpec, TorchAdamSpec, WrapperSpec, make_registry, plugin_with

import optreg
from optreg import RunSpec, SpecError, dump_spec
from optreg.convert import spec_to_dict


@pytest.fixture(scope="module")
def reg() -> optreg.Registry:
    return make_registry()


def error_of(reg, text: str, file: str = "run.toml") -> SpecError:
    with pytest.raises(SpecError) as info:
        reg.parse_spec(text, file=file)
    return info.value


@pytest.mark.parametrize(
    ("line", "path", "expected"),
    [
        ('lr = "1e-3"', "$.optimizer.lr", "expected a number, got the string '1e-3' (write it without quotes: 1e-3)"),
        ('foreach = "false"', "$.optimizer.foreach", "expected true or false, got the string 'false'"),
        ("lrr = 2", "$.optimizer.lrr", "unknown key 'lrr' (did you mean 'lr'?)"),
        ("betas = [0.9]", "$.optimizer.betas", "expected an array of 2 numbers, got 1 item"),
        ("betas = [0.9, 1.5]", "$.optimizer.betas[1]", "must be in [0, 1), got 1.5"),
        ("lr = true", "$.optimizer.lr", "expected a number, got a boolean (true)"),
        ("lr = nan", "$.optimizer.lr", "expected a finite number, got nan"),
        ("lr = -inf", "$.optimizer.lr", "expected a finite number"),
        ("eps = 0.0", "$.optimizer.eps", "must be > 0"),
        ("amsgrad = 1", "$.optimizer.amsgrad", "expected true or false, got the integer 1"),
    ],
)
def test_bad_values_name_file_path_and_what_is_valid(reg, line, path, expected):
    err = error_of(reg, f'[optimizer]\ntype = "torch_adam"\n{line}\n')
    assert err.file == "run.toml"
    assert err.path == path
    assert expected in err.message
    assert str(err).startswith(f"run.toml: {path}: ")


def test_unknown_type_lists_registered_names(reg):
    err = error_of(reg, '[optimizer]\ntype = "torch_adamm"\n')
    assert err.path == "$.optimizer.type"
    assert "unknown optimizer type 'torch_adamm' (did you mean 'torch_adam'?)" in err.message
    for name in ("sgd", "torch_adam", "routed", "wrapper"):
        assert name in err.message


def test_unknown_type_names_failed_plugins():
    class Broken:
        @optreg.hookimpl
        def optreg_register_optimizers(self, register):
            raise RuntimeError("cannot find libfoo")

    reg = optreg.Registry(plugins=[Broken()], entry_points=False)
    err = error_of(reg, '[optimizer]\ntype = "foo"\n')
    assert "plugins that failed to load" in err.message and "cannot find libfoo" in err.message


def test_missing_type_and_missing_optimizer(reg):
    err = error_of(reg, "[optimizer]\nlr = 0.1\n")
    assert err.path == "$.optimizer.type" and "registered optimizer types are" in err.message
    err = error_of(reg, "schema_version = 1\n")
    assert err.path == "$.optimizer" and "required key is missing" in err.message


def test_ints_reject_floats_bools_and_strings(reg):
    for value, hint in (("5.0", "(write 5)"), ("5.5", ""), ("true", ""), ('"5"', "without quotes")):
        err = error_of(reg, f'[optimizer]\ntype = "kinds"\nsteps = {value}\n')
        assert err.path == "$.optimizer.steps"
        assert "expected an integer" in err.message and hint in err.message


def test_floats_accept_integers(reg):
    spec = reg.parse_spec('[optimizer]\ntype = "kinds"\nlr = 1\n').optimizer
    assert spec.lr == 1.0 and isinstance(spec.lr, float)


def test_literal_choice_with_did_you_mean(reg):
    err = error_of(reg, '[optimizer]\ntype = "kinds"\nmode = "exakt"\n')
    assert err.path == "$.optimizer.mode"
    assert "expected one of 'fast', 'exact'" in err.message and "did you mean 'exact'" in err.message


def test_union_of_string_and_triple(reg):
    spec = reg.parse_spec('[optimizer]\ntype = "kinds"\ncoefficients = [3.4, -4.7, 2.0]\n').optimizer
    assert spec.coefficients == (3.4, -4.7, 2.0)
    err = error_of(reg, '[optimizer]\ntype = "kinds"\ncoefficients = [3.4, -4.7]\n')
    assert err.path == "$.optimizer.coefficients"
    assert "a string or an array of 3 numbers" in err.message


def test_nested_tuples_report_inner_index(reg):
    err = error_of(reg, '[optimizer]\ntype = "kinds"\nschedule = [[1.0, 2.0, 3.0], [1.0, "x", 3.0]]\n')
    assert err.path == "$.optimizer.schedule[1][1]"


def test_post_init_checks_keep_their_field_path(reg):
    err = error_of(reg, '[optimizer]\ntype = "kinds"\nmode = "exact"\nsteps = 2\n')
    assert err.path == "$.optimizer.steps" and "needs steps >= 3" in err.message


def test_every_error_is_reported(reg):
    err = error_of(reg, '[optimizer]\ntype = "torch_adam"\nlr = "x"\neps = -1.0\nbogus = 1\n[run]\nsteps = 0\n')
    paths = {p for p, _ in err.errors}
    assert {"$.optimizer.lr", "$.optimizer.bogus", "$.run.steps"} <= paths
    assert "$.optimizer.eps" in paths, "a bound error is reported beside the type errors, not after they are fixed"
    assert "errors in spec" in str(err)


def test_every_bound_error_is_reported_at_once(reg):
    err = error_of(reg, '[optimizer]\ntype = "torch_adam"\nlr = -1.0\neps = 0.0\nbetas = [1.5, -0.1]\n')
    assert {p for p, _ in err.errors} == {
        "$.optimizer.lr", "$.optimizer.eps", "$.optimizer.betas[0]", "$.optimizer.betas[1]"
    }


def test_a_cross_field_check_can_report_several_problems():
    @attrs.frozen(kw_only=True)
    class Window(optreg.OptimizerSpec):
        TYPE: ClassVar[str] = "window_test"
        low: int = optreg.field(0)
        high: int = optreg.field(10)
        width: int = optreg.field(5)

        def __attrs_post_init__(self):
            problems = []
            if self.low > self.high:
                problems.append(optreg.FieldValueError("low", f"must be <= high ({self.high}), got {self.low}"))
            if self.width > self.high - self.low:
                problems.append(optreg.FieldValueError("width", "must fit between low and high"))
            if problems:
                raise optreg.FieldValueErrors(problems)

    registry = optreg.Registry(plugins=[plugin_with(Window)], entry_points=False)
    with pytest.raises(optreg.SpecError) as info:
        registry.optimizer_spec({"type": "window_test", "low": 20})
    assert {p for p, _ in info.value.errors} == {"$.low", "$.width"}


def test_toml_syntax_error_has_line_and_column(reg):
    err = error_of(reg, '[optimizer]\ntype = "sgd"\nlr = = 1\n')
    assert err.path == "$" and "line 3, column" in err.message and err.file == "run.toml"


def test_load_spec_names_the_file(reg, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[optimizer]\ntype = "sgd"\nlr = "fast"\n')
    with pytest.raises(SpecError) as info:
        reg.load_spec(path)
    assert info.value.file == str(path) and str(path) in str(info.value)
    with pytest.raises(SpecError, match="file not found"):
        reg.load_spec(tmp_path / "missing.toml")


def test_schema_version_is_checked(reg):
    err = error_of(reg, 'schema_version = 2\n[optimizer]\ntype = "sgd"\n')
    assert err.path == "$.schema_version" and "unsupported schema_version 2" in err.message


def test_aliases_resolve_to_the_canonical_class(reg):
    spec = reg.parse_spec('[optimizer]\ntype = "tadam"\n').optimizer
    assert isinstance(spec, TorchAdamSpec)
    assert "type = \"torch_adam\"" in dump_spec(RunSpec(optimizer=spec))


TEXT = """
schema_version = 1

[optimizer]
type = "wrapper"
patience = 2

[optimizer.inner]
type = "torch_adam"
lr = 0.003
betas = [0.8, 0.95]
amsgrad = true

[[optimizer.group_overrides]]
params = ["blocks.*.attn_*"]
lr = 0.001

[[optimizer.group_overrides]]
params = ["lm_head.*", "nothing.*"]
strict = false
weight_decay = 0.1

[scheduler]
type = "constant"
units = "tokens"
t_max = 1000

[run]
steps = 7
"""


def test_round_trip_toml_spec_dict_toml(reg):
    spec = reg.parse_spec(TEXT)
    assert isinstance(spec.optimizer, WrapperSpec) and isinstance(spec.optimizer.inner, TorchAdamSpec)
    assert spec.optimizer.inner.betas == (0.8, 0.95)
    assert spec.optimizer.group_overrides[1].strict is False
    text = dump_spec(spec)
    again = reg.parse_spec(text)
    assert again == spec
    assert dump_spec(again) == text
    assert reg.parse_spec(spec_to_dict(spec)) == spec


def test_wrapper_overrides_validate_against_the_inner_spec(reg):
    bad = TEXT.replace("lr = 0.001", "lr = -1.0")
    err = error_of(reg, bad)
    assert err.path == "$.optimizer.group_overrides[0].lr" and "must be >= 0" in err.message
    bad = TEXT.replace("lr = 0.001", "patience = 1")
    err = error_of(reg, bad)
    assert err.path == "$.optimizer.group_overrides[0].patience" and "cannot be set per group" in err.message


def test_group_override_errors(reg):
    base = '[optimizer]\ntype = "torch_adam"\n[[optimizer.group_overrides]]\n'
    err = error_of(reg, base + "lr = 0.1\n")
    assert err.path == "$.optimizer.group_overrides[0].params"
    err = error_of(reg, base + 'params = ["a"]\nlrr = 0.1\n')
    assert err.path == "$.optimizer.group_overrides[0].lrr" and "did you mean 'lr'" in err.message
    err = error_of(reg, base + 'params = ["a"]\nforeach = true\n')
    assert "cannot be set per group" in err.message
    err = error_of(reg, base + 'params = ["a"]\nbetas = [0.9, 2.0]\n')
    assert err.path == "$.optimizer.group_overrides[0].betas[1]"
    err = error_of(reg, base + 'params = []\n')
    assert "at least one glob" in err.message


def test_parse_spec_accepts_mappings_and_specs_are_frozen(reg):
    spec = reg.parse_spec({"optimizer": {"type": "sgd", "lr": 0.5}})
    assert spec.optimizer.lr == 0.5
    with pytest.raises(AttributeError):
        spec.optimizer.lr = 1.0  # type: ignore[misc]


def test_build_optimizer_from_a_dict_reports_relative_paths(reg):
    with pytest.raises(SpecError) as info:
        reg.build_optimizer({"type": "torch_adam", "lr": "high"}, [])
    assert info.value.path == "$.lr"


def test_spec_error_pickles():
    import pickle

    err = SpecError("bad", path="$.a", file="f.toml")
    again = pickle.loads(pickle.dumps(err))
    assert (again.message, again.path, again.file) == ("bad", "$.a", "f.toml")


def test_optional_fields_must_default_to_none():
    import attrs

    @attrs.frozen(kw_only=True)
    class Bad(optreg.OptimizerSpec):
        TYPE = "bad_optional"
        label: str | None = optreg.field("x")

    from support import plugin_with

    reg = optreg.Registry(plugins=[plugin_with(Bad)], entry_points=False)
    assert reg.lookup("optimizer", "bad_optional") is None
    assert "default must be None" in reg.plugins[-1].error


def test_float_fields_are_finite_after_parsing(reg):
    spec = reg.parse_spec('[optimizer]\ntype = "torch_adam"\nlr = 1e-300\n').optimizer
    assert math.isfinite(spec.lr)
    assert isinstance(reg.parse_spec('[optimizer]\ntype = "kinds"\n').optimizer, IntsAndChoicesSpec)


def test_step_input_says_what_a_training_loop_must_give_step_and_wrappers_pass_their_inners_on():
    """A loop asks the spec, never the optimizer's name: SGD takes gradients, a closure-driven optimizer (SAM,
    L-BFGS) a closure, a wrapper that only gates its inner (skip-step) what its inner needs, and a wrapper
    that re-evaluates the loss itself (SAM around anything) its own."""
    from optreg.specs import STEP_INPUTS, OptimizerSpec
    from optreg.specs import WrapperSpec as Wrapper

    @attrs.frozen(kw_only=True)
    class NeedsClosure(OptimizerSpec):
        TYPE = "needs_closure"
        STEP_INPUT = "closure"

    @attrs.frozen(kw_only=True)
    class Gate(Wrapper):
        TYPE = "gate"

    @attrs.frozen(kw_only=True)
    class PerSample(Wrapper):
        TYPE = "per_sample_wrapper"
        STEP_INPUT = "per_sample"

    sgd = optreg.parse_spec({"optimizer": {"type": "sgd"}}).optimizer
    assert sgd.step_input() == "gradients"
    assert NeedsClosure().step_input() == "closure"
    assert Gate(inner=NeedsClosure()).step_input() == "closure"
    assert Gate(inner=sgd).step_input() == "gradients"
    assert PerSample(inner=NeedsClosure()).step_input() == "per_sample"
    assert set(STEP_INPUTS) == {"gradients", "closure", "per_sample"}
