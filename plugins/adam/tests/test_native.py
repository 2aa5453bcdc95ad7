"""AdamW with bfloat16 state through optreg's C kernel (``optreg_adam.functional.native``), the default path for
bf16 state on CPU wherever a C compiler builds it, against the torch path it replaces; and how the kernel is
built and what happens where it cannot be."""

from __future__ import annotations

import warnings

import optreg_adam.functional as F
import pytest
import torch
from optreg_adam.functional import native

import optreg
import optreg.native

needs_native = pytest.mark.skipif(not F.native_available(), reason="no C compiler builds the kernel here")


def _run(fused, *, steps=4, shape=(300, 257), step_factors=None, threads=None, **options):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(shape))
    spec = {"type": "adamw", "lr": 1e-2, "weight_decay": 0.1, "state_dtype": "bfloat16", "fused": fused, **options}
    opt = optreg.build_optimizer(spec, [p])
    path = opt.impl_for(opt.param_groups[0], [p], [p])
    saved = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        for k in range(steps):
            p.grad = torch.randn_like(p)
            factor = None if step_factors is None else torch.tensor(step_factors[k])
            if factor is not None and float(factor) == 0:
                p.grad[0, 0] = float("nan")  # a skipped step must leave everything as it was, even so
            opt.step(step_factor=factor) if factor is not None else opt.step()
    finally:
        torch.set_num_threads(saved)
    state = opt.state[p]
    return path, p.detach().clone(), state["exp_avg"].clone(), state["exp_avg_sq"].clone()


@needs_native
@pytest.mark.parametrize("options", [
    {}, {"maximize": True}, {"type": "adam"}, {"type": "adam", "weight_decay": 0.0},
    {"betas": [0.5, 0.9], "eps": 1e-3},
], ids=["adamw", "maximize", "adam_l2", "adam", "betas_eps"])
def test_the_c_kernel_matches_the_torch_path(options):
    """Same math and the same random bits as the torch path (fused = false): the state agrees to a bf16 ulp and
    the params to float32 rounding. Not bit-exact: torch's vectorised kernels (lerp, addcmul) fuse some
    multiply-adds (one rounding, not two) that the C kernel rounds twice, and which ones depends on the CPU, so a
    moment can land on the other side of a rounding threshold."""
    factors = [1.0, 1.0, 1.0, 1.0]
    path, p, m, v = _run(None, step_factors=factors, **options)
    ref_path, p_ref, m_ref, v_ref = _run(False, step_factors=factors, **options)
    assert (path, ref_path) == ("native", "single")
    for got, want in ((m.float(), m_ref.float()), (v.float(), v_ref.float())):
        # A flip is one bf16 ulp (<= 2**-7 relative) of the moment at that step; the moment's later steps carry
        # it on, so the bound is a couple of ulps of the largest moment.
        assert float((got - want).abs().max()) <= 2**-6 * float(want.abs().max())
        assert float((got != want).float().mean()) < 1e-3
    # a flipped moment moves its param by up to lr * 2**-7 (the update m / sqrt(v) is O(1))
    torch.testing.assert_close(p, p_ref, rtol=1e-5, atol=1e-2 * 2**-6)


@needs_native
def test_a_skipped_step_leaves_param_and_state_bit_identical():
    """step_factor 0 with a NaN gradient: the kernel returns before touching anything (no re-rounding noise)."""
    path, p, m, v = _run(None, steps=2, step_factors=[1.0, 0.0])
    _, p1, m1, v1 = _run(None, steps=1, step_factors=[1.0])
    assert path == "native"
    assert torch.equal(p, p1) and torch.equal(m, m1) and torch.equal(v, v1)


@needs_native
def test_threads_split_the_work_without_changing_a_bit():
    """Each element's update depends only on its own index and the seed, not on which thread takes it. Exact on
    every CPU: the kernel is built without contracted multiply-adds (``-ffp-contract=off``), so an element rounds
    alike in the vectorised body and in the scalar tail, whatever the vector width."""
    shape = (1 << 10, 100)  # 102400 elements: above the kernel's one-thread threshold
    one = _run(None, shape=shape, threads=1)
    two = _run(None, shape=shape, threads=2)
    for a, b in zip(one[1:], two[1:]):
        assert torch.equal(a, b)


@needs_native
def test_a_tensor_the_kernel_does_not_take_steps_on_the_torch_path():
    """A non-contiguous param (a transposed view) next to one the kernel takes: it steps on the torch path,
    exactly as with ``fused = false`` (the same torch ops on both sides, so bit-exact)."""
    results = []
    for fused in (None, False):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(64, 48).t())  # non-contiguous
        q = torch.nn.Parameter(torch.randn(64, 48))
        opt = optreg.build_optimizer({"type": "adamw", "state_dtype": "bfloat16", "lr": 1e-2, "fused": fused}, [p, q])
        for _ in range(3):
            p.grad, q.grad = torch.randn_like(p), torch.randn_like(q)
            opt.step()
        assert not native.native_applies(p, p.grad, opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"])
        assert native.native_applies(q, q.grad, opt.state[q]["exp_avg"], opt.state[q]["exp_avg_sq"])
        results.append((p.detach().clone(), opt.state[p]["exp_avg"].clone(), opt.state[p]["exp_avg_sq"].clone()))
    for a, b in zip(*results):
        assert torch.equal(a, b)


@needs_native
def test_the_step_bumps_the_version_counters_like_an_in_place_op():
    """Autograd must still see the in-place write: a backward through a graph that saved the param before the
    step fails, as with any torch optimizer."""
    path, *_ = _run(None, steps=1)
    assert path == "native"
    p = torch.nn.Parameter(torch.randn(8, 8))
    opt = optreg.build_optimizer({"type": "adamw", "state_dtype": "bfloat16"}, [p])
    p.grad = torch.randn_like(p)
    before = p._version
    opt.step()
    assert p._version > before
    assert opt.state[p]["exp_avg"]._version > 0


def test_built_once_into_the_cache_and_reused(tmp_path, monkeypatch):
    if optreg.native.find_c_compiler() is None:
        pytest.skip("no C compiler here")
    monkeypatch.setenv("OPTREG_CACHE_DIR", str(tmp_path))
    optreg.native.load_library.cache_clear()
    try:
        assert optreg.native.load_library(native._SOURCE) is not None
        built = list(tmp_path.glob("adamw_bf16-*.so"))
        assert len(built) == 1
        mtime = built[0].stat().st_mtime_ns
        optreg.native.load_library.cache_clear()
        assert optreg.native.load_library(native._SOURCE) is not None
        assert built[0].stat().st_mtime_ns == mtime and list(tmp_path.glob("*.so")) == built
        assert not list(tmp_path.glob("tmp*")), "no temporary file left behind"
    finally:
        optreg.native.load_library.cache_clear()


def test_without_a_compiler_or_with_native_off_the_torch_path_steps(monkeypatch):
    """No C compiler, or OPTREG_NATIVE=0: no kernel, no warning, and bf16 state steps on the torch path."""
    for setup in (lambda: monkeypatch.setattr(optreg.native, "find_c_compiler", lambda: None),
                  lambda: monkeypatch.setenv("OPTREG_NATIVE", "0")):
        monkeypatch.undo()
        setup()
        optreg.native.load_library.cache_clear()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert not F.native_available()
                path, p, m, _ = _run(None, steps=2)
            assert path == "single" and m.dtype == torch.bfloat16 and torch.isfinite(p).all()
        finally:
            optreg.native.load_library.cache_clear()


def test_a_compiler_that_fails_warns_once_and_the_torch_path_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTREG_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # exits 1 whatever it is given
    optreg.native.load_library.cache_clear()
    try:
        with pytest.warns(optreg.native.NativeBuildWarning, match="adamw_bf16.c did not build"):
            assert not F.native_available()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert not F.native_available()  # once: the failure is remembered for the process
            path, *_ = _run(None, steps=1)
        assert path == "single"
        assert not list(tmp_path.glob("*.so"))
    finally:
        optreg.native.load_library.cache_clear()


@needs_native
def test_one_call_steps_a_group_of_many_sizes_as_the_torch_path_does():
    """The kernel steps a whole group in one parallel region whose thread shares cross tensor boundaries: each
    tensor's elements keep their own indices and seed, so 1 and 2 threads agree bit for bit (exact on every CPU, as
    in test_threads_split_the_work_without_changing_a_bit), and the result is
    the torch path's (to a bf16 ulp in the state, as above)."""
    shapes = [(300, 257), (7,), (1,), (129, 64), (3, 5, 2), (40000,)]  # 125,369 elements: two threads' work

    def run(fused, threads):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
        opt = optreg.build_optimizer({"type": "adamw", "lr": 1e-2, "state_dtype": "bfloat16", "fused": fused,
                                      "weight_decay": 0.1}, params)
        saved = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for _ in range(3):
                for p in params:
                    p.grad = torch.randn_like(p)
                opt.step()
        finally:
            torch.set_num_threads(saved)
        return [t.detach().clone() for p in params for t in (p, opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"])]

    one, two, torch_path = run(None, 1), run(None, 2), run(False, 2)
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    for k, (got, want) in enumerate(zip(two, torch_path)):
        got, want = got.float(), want.float()
        if k % 3 == 0:  # a param
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-2 * 2**-6)
        else:
            assert float((got - want).abs().max()) <= 2**-6 * float(want.abs().max())
            assert float((got != want).float().mean()) < 1e-2


def test_an_unwritable_cache_falls_back_to_the_temporary_directory(tmp_path, monkeypatch):
    if optreg.native.find_c_compiler() is None:
        pytest.skip("no C compiler here")
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("OPTREG_CACHE_DIR", str(blocked / "optreg"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    optreg.native.load_library.cache_clear()
    optreg.native._writable.cache_clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert optreg.native.load_library(native._SOURCE) is not None
        assert list((tmp_path / "tmp").glob("optreg-*/adamw_bf16-*.so"))
    finally:
        optreg.native.load_library.cache_clear()
        optreg.native._writable.cache_clear()
