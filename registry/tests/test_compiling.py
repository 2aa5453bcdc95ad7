"""optreg.compiling's policy: ``compile = "auto"`` compiles only steps big enough to pay the compile back, stays
eager for small models and tests, and a kernel torch.compile cannot compile runs eagerly with one warning."""

from __future__ import annotations

import warnings

import pytest
import torch

import optreg.compiling as C
from optreg.testing.problems import PROBLEMS, TinyRegression


def test_auto_stays_eager_for_every_kit_problem_and_compiles_from_the_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPTREG_AUTO_COMPILE_NUMEL", raising=False)
    for make in (*PROBLEMS.values(), lambda: TinyRegression(torch.bfloat16)):
        params = list(make().parameters())
        assert C.use_compile("auto", params) is False
        assert C.use_compile(True, params) is True and C.use_compile(False, params) is False
    optimizer = torch.optim.SGD([torch.zeros(C.AUTO_COMPILE_NUMEL, device="meta")], lr=0.1)
    assert C.use_compile("auto", optimizer) is C.compile_available()  # an optimizer counts all its groups
    monkeypatch.setenv("OPTREG_AUTO_COMPILE_NUMEL", "0")
    assert C.use_compile("auto", [torch.zeros(3)]) is C.compile_available()


def test_auto_never_compiles_without_a_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "compile_available", lambda: False)
    assert C.use_compile("auto", [torch.zeros(C.AUTO_COMPILE_NUMEL, device="meta")]) is False
    assert C.use_compile(True, [torch.zeros(1)]) is True  # an explicit true is the user's call


def test_a_bad_setting_is_a_clear_error() -> None:
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match='compile must be true, false or "auto"'):
            C.use_compile(bad, [])
    assert C.check_compile_setting("auto") == "auto"


def test_a_kernel_that_cannot_compile_runs_eagerly_with_one_warning() -> None:
    def double_(x: torch.Tensor) -> None:
        x.mul_(2)

    def broken(*args: object) -> None:
        raise RuntimeError("no C++ compiler found\nmore detail")

    x = torch.ones(3)
    with pytest.warns(RuntimeWarning, match=r"could not compile double_ here \(RuntimeError: no C\+\+ compiler"):
        C.call_compiled(double_, broken, x)
    assert torch.equal(x, torch.full((3,), 2.0))  # the step ran, eagerly
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: later calls are eager without trying again
        C.call_compiled(double_, broken, x)
    assert torch.equal(x, torch.full((3,), 4.0))


def test_the_kernels_own_error_is_raised_not_hidden() -> None:
    def bad_kernel(x: torch.Tensor) -> None:
        raise ValueError("shape mismatch in the kernel")

    def broken(*args: object) -> None:
        raise RuntimeError("compile failed")

    with pytest.raises(ValueError, match="shape mismatch"):
        C.call_compiled(bad_kernel, broken, torch.ones(1))
