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


def test_the_backend_is_inductor_unless_the_environment_or_a_block_names_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPTREG_COMPILE_BACKEND", raising=False)
    assert C.current_backend() == C.DEFAULT_BACKEND == "inductor"
    monkeypatch.setenv("OPTREG_COMPILE_BACKEND", "eager")
    assert C.current_backend() == "eager"
    with C.compile_backend("aot_eager"):
        assert C.current_backend() == "aot_eager"  # the block wins over the environment
        with C.compile_backend("inductor"):
            assert C.current_backend() == "inductor"
        assert C.current_backend() == "aot_eager"
    assert C.current_backend() == "eager"
    with pytest.raises(ValueError, match="backend name"), C.compile_backend(""):
        pass


def test_compiled_kernels_are_kept_per_backend_and_only_inductor_gets_its_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Switching backends never reuses the other backend's compiled function (recorded, nothing compiles)."""
    monkeypatch.delenv("OPTREG_COMPILE_BACKEND", raising=False)
    built: list[tuple[str, object]] = []

    def fake_compile(fn, *, dynamic, fullgraph, backend, options):
        built.append((backend, options))
        return lambda *args: None

    monkeypatch.setattr(C.torch, "compile", fake_compile)
    monkeypatch.setattr(C, "_COMPILED", {})
    monkeypatch.setattr(C, "_CHUNKED", {})

    def kernel_(x: torch.Tensor) -> None:
        x.add_(1)

    inductor = C.compiled(kernel_)
    with C.compile_backend("aot_eager"):
        aot = C.compiled(kernel_)
        assert C.compiled(kernel_) is aot and aot is not inductor
        chunk = C._chunked(kernel_)
    assert C.compiled(kernel_) is inductor and C._chunked(kernel_) is not chunk
    assert built == [("inductor", C._INDUCTOR_OPTIONS), ("aot_eager", None), ("aot_eager", None),
                     ("inductor", C._INDUCTOR_OPTIONS)]
    with C.compile_backend("no_such_backend"), pytest.raises(ValueError, match=r"unknown torch\.compile backend"):
        C.compiled(kernel_)


def test_aot_eager_takes_the_compiled_branches_and_counts_the_compiled_calls() -> None:
    """What the kit's compiled-parity check relies on: under aot_eager the kernel runs traced (its
    ``is_compiling()`` branch), every call is counted as compiled, and a failed compile as a fallback."""
    from torch._dynamo.utils import counters

    def branchy_(x: torch.Tensor) -> None:
        x.add_(1.0 if torch.compiler.is_compiling() else 100.0)

    xs = [torch.zeros(5) for _ in range(C.COMPILE_CHUNK + 1)]
    captured = counters["stats"]["calls_captured"]
    with C.compile_backend("aot_eager"):
        C.run_compiled(branchy_, [(x,) for x in xs])
    assert all(torch.equal(x, torch.ones(5)) for x in xs)  # the compiled branch, in a chunk and a single call
    assert counters["stats"]["calls_captured"] > captured
    assert C._RAN[branchy_, "aot_eager"] == len(xs) and not C._FELL_BACK[branchy_, "aot_eager"]
    assert not C._RAN[branchy_, "inductor"]  # nothing ran under the default backend


def test_a_fallback_to_eager_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "_EAGER_ONLY", set())

    def halve_(x: torch.Tensor) -> None:
        x.mul_(0.5)

    def broken(*args: object) -> None:
        raise RuntimeError("compile failed")

    x = torch.ones(2)
    with pytest.warns(RuntimeWarning, match="could not compile halve_"), C.compile_backend("eager"):
        C.call_compiled(halve_, broken, x)
    with C.compile_backend("eager"):
        C.call_compiled(halve_, broken, x)  # eager from now on, without another warning, counted again
    assert C._FELL_BACK[halve_, "eager"] == 2 and not C._RAN[halve_, "eager"]
    assert (halve_, "eager") in C._EAGER_ONLY and (halve_, "inductor") not in C._EAGER_ONLY
    assert torch.equal(x, torch.full((2,), 0.25))


def test_compile_all_sizes_lifts_a_plugins_size_threshold() -> None:
    assert C.compile_min_numel(1 << 16) == 1 << 16
    with C.compile_all_sizes():
        assert C.compile_min_numel(1 << 16) == 0
    assert C.compile_min_numel(1 << 16) == 1 << 16


def test_another_backend_has_its_own_recompile_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dynamo counts its recompile limit per code object, whatever the backend: the kit's aot_eager graphs of a
    kernel must not use up the budget of its inductor graphs (nor the other way round) in one test process."""
    import torch._dynamo

    monkeypatch.delenv("OPTREG_COMPILE_BACKEND", raising=False)

    def shift_(x: torch.Tensor, by: str) -> None:
        x.add_(len(by))  # each string is a constant of its own graph

    x = torch.zeros(3)
    with torch._dynamo.config.patch(recompile_limit=2), C.compile_backend("eager"):
        for by in ("a", "bb"):  # the limit reached under "eager"
            C.call_compiled(shift_, C.compiled(shift_), x, by)
        with C.compile_backend("aot_eager"), warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback to eager
            for by in ("ccc", "dddd"):
                C.call_compiled(shift_, C.compiled(shift_), x, by)
    assert torch.equal(x, torch.full((3,), 10.0))
    assert C._RAN[shift_, "eager"] == 2 and C._RAN[shift_, "aot_eager"] == 2
