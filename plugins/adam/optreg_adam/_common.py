"""Shared helpers of the Adam family: scalar tensors, step gating, compiled steps, stochastic rounding.

Every per-tensor update in this package takes its step-dependent scalars (bias
corrections, the LR, the step_factor gate) as 0-dim tensors. That keeps three
promises at once:

* ``step_factor`` gating needs no host sync (a skipped step multiplies the
  scalars by 0 instead of branching on a tensor value);
* ``step_factor = 1`` equals the plain step bit for bit (the plain step runs the
  very same tensor ops; multiplying by 1.0 is exact in IEEE arithmetic);
* a ``torch.compile``'d step does not recompile when the LR or the step changes.
"""

from __future__ import annotations

import builtins
import functools
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = [
    "as_scalar",
    "compiled",
    "ema_",
    "gate",
    "round_to_bf16_stochastic",
    "supports_fused_adam",
]

Number = float | torch.Tensor


def as_scalar(value: Number, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``value`` as a 0-dim tensor on ``device`` (a tensor is moved without a host sync)."""
    if isinstance(value, torch.Tensor):
        return value.reshape(()).to(device=device, dtype=dtype, non_blocking=True)
    return torch.tensor(float(value), device=device, dtype=dtype)


def gate(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """``x`` where ``keep`` (a 0-dim bool tensor) is true, zeros otherwise (NaN/inf cannot leak through)."""
    if keep is None:
        return x
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


def ema_(buf: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | float) -> torch.Tensor:
    """``buf += weight * (x - buf)`` in place (``buf.lerp_(x, weight)``), returns ``buf``.

    Eager, this is torch's lerp kernel. Inside a ``torch.compile``'d step it is written as a
    subtract, multiply and add: inductor's lerp decomposition (two formulas and a select) makes a
    CPU Adam step ~30% slower. The value equals lerp's for ``weight < 0.5`` (lerp's formula there)
    up to fused multiply-add rounding.
    """
    if torch.compiler.is_compiling():
        return buf.add_((x - buf) * weight)
    return buf.lerp_(x, weight)


def scalar_vectors(steps: Sequence[torch.Tensor]) -> torch.Tensor:
    """The step counters of a group as one float32 vector (so bias corrections cost a few ops per group)."""
    if len(steps) == 1:
        return steps[0].reshape(1).float()
    return torch.stack(list(steps)).float()


_COMPILED: dict[Any, Callable[..., Any]] = {}

#: Every CPU kernel gets an OpenMP loop whose thread count is decided when it runs. Without this,
#: inductor decides from the sizes seen when compiling: a graph first compiled on small tensors
#: (biases, a unit test, or an on-disk cache entry of one) would stay single-threaded for every
#: later size, since one dynamic-shape graph serves them all.
_INDUCTOR_OPTIONS = {"cpp.dynamic_threads": True}


def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compile(fn)`` with dynamic shapes, built once per function.

    Per-tensor steps are called on flattened 1-D views, so one compiled graph
    serves every parameter size; scalars arrive as 0-dim tensors, so new LR or
    step values do not recompile.
    """
    key = fn
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(fn, dynamic=True, fullgraph=True, options=_INDUCTOR_OPTIONS)
    return _COMPILED[key]


#: Per-tensor updates per compiled call. One call of a compiled function costs ~0.1-0.15 ms on CPU
#: (guard checks, dispatch) whatever the tensor size; a chunk of 4 pays it once for 4 tensors, while
#: compiling stays a few seconds (each update in the chunk is its own kernel, compiled once).
COMPILE_CHUNK = 4

_CHUNKED: dict[Any, Callable[..., Any]] = {}


def _apply_each(calls):  # the body of every chunked function: one code object per kernel, see below
    for args in calls:
        KERNEL(*args)  # noqa: F821 - a global of the per-kernel function object


def _chunked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compile`` of ``lambda calls: [fn(*args) for args in calls]``, built once per ``fn``.

    Dynamo keeps its compiled graphs (and its recompile limit) per code object, so each kernel gets
    its own copy of the loop's code object instead of sharing one cache with every other kernel.
    """
    if fn not in _CHUNKED:
        code = _apply_each.__code__.replace(co_name=f"chunked_{fn.__name__}")
        loop = types.FunctionType(code, {"KERNEL": fn, "__builtins__": builtins})
        _CHUNKED[fn] = torch.compile(loop, dynamic=True, fullgraph=True, options=_INDUCTOR_OPTIONS)
    return _CHUNKED[fn]


#: Graphs a compiled kernel may hold while optreg calls it (torch's own default is 8). Each set of
#: per-group Python constants (betas, weight decay on/off, maximize) needs up to three graphs, so
#: a few param groups with different betas would hit torch's limit, where ``fullgraph`` fails hard.
RECOMPILE_LIMIT = 64

_WARNED_LIMIT: set[Any] = set()


@functools.cache
def _dynamo_limit() -> tuple[str, tuple[type[BaseException], ...]]:
    """(name of dynamo's recompile-limit setting, the exceptions of hitting it under fullgraph).

    Looked up on first use: importing ``torch._dynamo`` when the plugin loads would slow every
    ``optreg`` command and import triton before a test suite can set ``TRITON_INTERPRET``.
    """
    import torch._dynamo

    name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    hits = tuple(getattr(torch._dynamo.exc, e) for e in ("FailOnRecompileLimitHit", "FailOnCacheLimitHit")
                 if hasattr(torch._dynamo.exc, e))
    return name, hits


def _call_or_eager(fn: Callable[..., Any], compiled_call: Callable[[], Any], calls: Sequence[tuple[Any, ...]]) -> None:
    """``compiled_call()``, or ``fn`` eagerly on ``calls`` (warning once per kernel) past the recompile limit.

    Hitting the limit raises before the graph runs, so nothing has been updated yet.
    """
    try:
        compiled_call()
    except _dynamo_limit()[1]:
        if fn not in _WARNED_LIMIT:
            _WARNED_LIMIT.add(fn)
            warnings.warn(
                f"optreg: the compiled {fn.__name__} reached {RECOMPILE_LIMIT} graphs (one set per distinct "
                "group of constant options); the remaining updates run eagerly (slower, same result)",
                RuntimeWarning, stacklevel=4,
            )
        for args in calls:
            fn(*args)


def run_compiled(fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> None:
    """Run ``fn(*args)`` for every ``args`` in ``calls`` through ``torch.compile``, :data:`COMPILE_CHUNK` at a time.

    Tensors must be flattened (1-D, see :func:`flat`). At most three graphs per kernel and set of
    Python constants: a chunk, a single call (the remainder), and a call with a tensor of fewer
    than 2 elements (dynamic shapes specialise those). Duck sizing is off while compiling, so
    chunks of differently sized tensors share the chunk's graph instead of recompiling for every
    new pattern of equal sizes. Past :data:`RECOMPILE_LIMIT` graphs the kernel runs eagerly.
    """
    import torch.fx.experimental._config as fx_config

    regular: list[tuple[Any, ...]] = []
    tiny: list[tuple[Any, ...]] = []
    for args in calls:
        small = any(isinstance(a, torch.Tensor) and a.dim() > 0 and a.numel() < 2 for a in args)
        (tiny if small else regular).append(args)
    with fx_config.patch(use_duck_shape=False), torch._dynamo.config.patch(**{_dynamo_limit()[0]: RECOMPILE_LIMIT}):
        whole = len(regular) - len(regular) % COMPILE_CHUNK
        if whole:
            chunk = _chunked(fn)
            for start in range(0, whole, COMPILE_CHUNK):
                part = regular[start:start + COMPILE_CHUNK]
                _call_or_eager(fn, functools.partial(chunk, part), part)
        single = compiled(fn)
        for args in (*regular[whole:], *tiny):
            _call_or_eager(fn, functools.partial(single, *args), (args,))


def flat(t: torch.Tensor | None) -> torch.Tensor | None:
    """A 1-D alias of a contiguous tensor (``None`` passes through), for the compiled steps.

    ``detach()`` makes it a plain tensor rather than a view: dynamo guards a view on its base's
    shape, so views of 1-D, 2-D and 4-D params would each need their own graph. The alias shares
    the storage and the version counter, so the in-place update still bumps the param's version.
    """
    return None if t is None else t.view(-1).detach()


def can_flatten(*tensors: torch.Tensor | None) -> bool:
    return all(t is None or t.is_contiguous() for t in tensors)


_FUSED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def supports_fused_adam(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether torch's fused Adam kernel (``torch._fused_adam(w)_``) can update these tensors."""
    if not hasattr(torch, "_fused_adamw_"):
        return False
    for t in tensors:
        if t.device.type not in ("cpu", "cuda", "mps", "xpu") or t.dtype not in _FUSED_DTYPES or t.is_sparse:
            return False
        if t.is_complex():
            return False
    return True


# ---------------------------------------------------------------- stochastic rounding to bfloat16

_GOLDEN = 0x9E3779B1 - (1 << 32)  # as a signed int32
_MIX1 = 0x7FEB352D
_MIX2 = 0x846CA68B - (1 << 32)
_INDEX_CACHE: dict[torch.device, torch.Tensor] = {}


def _indices(n: int, device: torch.device) -> torch.Tensor:
    cached = _INDEX_CACHE.get(device)
    if cached is None or cached.numel() < n:
        size = max(n, 2 * (cached.numel() if cached is not None else 0), 1 << 16)
        cached = torch.arange(size, dtype=torch.int32, device=device)
        _INDEX_CACHE[device] = cached
    return cached[:n]


def hash_bits(index: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """32 pseudo-random bits per element (as int32) from (element index, seed): a counter-based hash.

    Deterministic (a resumed run draws the same bits), free of generator state, and the same in
    eager and compiled code. Integer arithmetic wraps modulo 2**32.
    """
    x = index * _GOLDEN + seed
    x = x * _MIX1
    x = x ^ ((x >> 15) & 0x1FFFF)
    x = x * _MIX2
    return x ^ ((x >> 16) & 0xFFFF)


def round_to_bf16_stochastic(
    x: torch.Tensor, seed: torch.Tensor | None = None, index: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Round float32 ``x`` to bfloat16, up or down with probability given by the distance (unbiased).

    ``E[result] = x`` exactly (for finite ``x`` away from the overflow threshold);
    the error is below one bf16 ulp (``2**-7 |x|``), with variance at most ``ulp**2 / 4``.
    The 16 random bits per element are ``noise`` (int32 in [0, 65536)) or the low half of
    :func:`hash_bits` of (``index``, ``seed``); ``seed`` is an int32 0-dim tensor.
    """
    x = x.float()
    if noise is None:
        if index is None:  # inside a compiled graph this is an iota, fused into the kernel (no memory traffic)
            index = torch.arange(x.numel(), dtype=torch.int32, device=x.device).view(x.shape)
        noise = hash_bits(index, seed) & 0xFFFF
    bits = x.view(torch.int32)
    rounded = (bits + noise) & -65536  # add 16 random low bits, then truncate: round up w.p. frac
    # (Exact conversion: the low half is 0. Shifting the int pattern into an int16 bfloat16 view is
    # cheaper in eager but stops inductor from vectorizing the compiled step, so it is not used.)
    return rounded.view(torch.float32).to(torch.bfloat16)


def seed_of(step: torch.Tensor, salt: int) -> torch.Tensor:
    """An int32 seed from the (float) step counter and a per-tensor salt, without a host sync."""
    return step.to(torch.int32) * 0x27D4EB2F + (salt & 0x7FFFFFFF)


@functools.cache
def is_compiling_supported() -> bool:
    return hasattr(torch, "compile")
