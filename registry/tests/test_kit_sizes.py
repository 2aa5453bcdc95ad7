"""The pieces of the kit's huge-sizes check (issue 20): which fields it asks for a bound, and its hang guard."""

from __future__ import annotations

import itertools
from typing import ClassVar

import attrs
import pytest

import optreg
from optreg.specs import MAX_COUNT, MAX_STEPS, spec_fields
from optreg.testing.checks import HUGE, _huge_value, _Timeout, _within_seconds, size_exempt


@attrs.frozen(kw_only=True)
class Sized(optreg.OptimizerSpec):
    TYPE: ClassVar[str] = "sized"
    window: int = optreg.field(8, ge=1, le=MAX_COUNT)
    sizes: tuple[int, ...] = optreg.field((), ge=1, le=MAX_COUNT)
    warmup: int | None = optreg.field(None, ge=0, le=MAX_STEPS)
    seed: int = optreg.field(0, ge=0)
    data_seed: int | None = optreg.field(None, ge=0)
    tag: int = optreg.field(0, unbounded=True)
    lr: float = optreg.field(0.1, ge=0)
    flag: bool = optreg.field(False)


def test_integer_fields_get_2_53_in_their_shape():
    hints = optreg.convert.field_types(Sized)
    values = {f.name: _huge_value(hints[f.name]) for f in spec_fields(Sized)}
    assert values["window"] == HUGE == 2**53 and values["warmup"] == HUGE and values["sizes"] == (HUGE,)
    assert values["lr"] is None and values["flag"] is None and values["no_decay"] is None


def test_seeds_and_declared_unbounded_fields_are_exempt():
    exempt = {f.name for f in spec_fields(Sized) if size_exempt(f)}
    assert exempt == {"seed", "data_seed", "tag"}


class _Plugin:
    @staticmethod
    @optreg.hookimpl
    def optreg_register_optimizers(register):
        register(Sized)


def test_the_bounds_refuse_2_53_at_the_fields_path():
    registry = optreg.Registry(plugins=[_Plugin], entry_points=False)
    with pytest.raises(optreg.SpecError) as info:
        registry.parse_spec(f'[optimizer]\ntype = "sized"\nwindow = {HUGE}\n')
    assert info.value.path == "$.optimizer.window" and f"{MAX_COUNT}]" in info.value.message


def test_the_guard_interrupts_a_python_loop():
    def spin() -> None:
        for _ in itertools.count():
            pass

    with pytest.raises(_Timeout):
        _within_seconds(0.2, spin)
    assert _within_seconds(5.0, lambda x: x + 1, 1) == 2  # and returns what a quick call returns
