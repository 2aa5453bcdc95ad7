"""torch.compile for per-tensor optimizer kernels: a few tensors per call, a bounded number of graphs.

A plugin writes its update once as tensor ops on one parameter (step-dependent scalars as 0-dim
tensors, so a new LR or step never recompiles) and runs it eagerly, or through
:func:`run_compiled` over flattened tensors (:func:`flat`). What this module takes care of:

* one call of a compiled function costs ~0.1 ms of guard checks on CPU whatever the tensor size,
  so :data:`COMPILE_CHUNK` tensors share a call;
* one graph serves every size and rank (dynamic shapes on detached 1-D aliases, duck sizing off):
  at most three per kernel and set of Python constants (a chunk, a single call, a 1-element call);
* inductor decides OpenMP threads at run time, so a graph first compiled on small tensors is not
  left single-threaded for big ones;
* past :data:`RECOMPILE_LIMIT` graphs the kernel runs eagerly (with one warning) instead of failing
  the step, as ``fullgraph`` compilation would at torch's own limit of 8;
* one backend for every kernel: inductor, or another one named by :func:`compile_backend` /
  ``OPTREG_COMPILE_BACKEND`` (``"aot_eager"`` for tests: seconds to compile, the same traced code).

Nothing here imports ``torch._dynamo`` until the first compiled call.
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import functools
import types
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

__all__ = [
    "AUTO_COMPILE_NUMEL",
    "COMPILE_CHUNK",
    "CompileSetting",
    "DEFAULT_BACKEND",
    "RECOMPILE_LIMIT",
    "call_compiled",
    "can_flatten",
    "check_compile_setting",
    "compile_all_sizes",
    "compile_available",
    "compile_backend",
    "compile_min_numel",
    "compiled",
    "current_backend",
    "ema_",
    "flat",
    "run_compiled",
    "use_compile",
]

#: What an optimizer's ``compile`` option may say: ``True``, ``False`` or ``"auto"`` (the default).
CompileSetting = bool | str

#: ``compile = "auto"`` compiles an optimizer's per-tensor step when its parameters hold at least this many
#: elements (32 MiB of float32): there a compiled step saves ~1-2 ms per million elements against the eager
#: loops on a CPU (bench: lion 2.1-3.1x -> 1.2x fused AdamW's time per byte), so the one-off compile of
#: ~10-40 s per kernel pays back within a few hundred steps. Smaller models, and every test, stay eager.
#: ``OPTREG_AUTO_COMPILE_NUMEL`` overrides it (e.g. 0: always compile where available).
AUTO_COMPILE_NUMEL = 2**23


def check_compile_setting(value: Any) -> CompileSetting:
    """``value`` if it is a ``compile`` setting (``True``, ``False``, ``"auto"``), else a ``ValueError``."""
    if isinstance(value, bool) or value == "auto":
        return value
    raise ValueError(f'compile must be true, false or "auto", got {value!r}')


@functools.cache
def compile_available() -> bool:
    """Whether ``torch.compile`` can run here: dynamo supports this Python, and inductor finds a C++ compiler
    for CPU kernels (``CXX``, or ``g++`` / ``c++`` / ``clang++`` on the PATH)."""
    import os
    import shutil

    try:
        import torch._dynamo

        if not torch._dynamo.is_dynamo_supported():
            return False
    except Exception:  # noqa: BLE001 - any import failure means no compiler
        return False
    candidates = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    return any(c and shutil.which(c) for c in candidates)


def _numel(params: Any) -> int:
    groups = getattr(params, "param_groups", None)  # an optimizer: every parameter of every group
    tensors = [p for g in groups for p in g["params"]] if groups is not None else list(params)
    return sum(t.numel() for t in tensors if isinstance(t, torch.Tensor))


def use_compile(setting: CompileSetting, params: Any) -> bool:
    """Whether a step takes its ``torch.compile``'d path: ``True`` / ``False`` as given; ``"auto"`` when the
    tensors the compiled path would step (``params``: a param group's tensors, or an optimizer whose step is
    one pass over all its groups) hold :data:`AUTO_COMPILE_NUMEL` elements or more and
    :func:`compile_available`. Inside a step that is itself being compiled, never (no nesting).

    Per group, not per optimizer: a large model's no-decay group (biases, norms: a few thousand elements)
    stays eager, where a compiled per-tensor loop costs more in call overhead than it saves (measured:
    +1.4 ms per step for ten 1024-vectors next to ten 1024x1024 matrices in fused AdamW's 5.8 ms)."""
    import os

    if setting is True or setting is False:
        return setting
    check_compile_setting(setting)
    if torch.compiler.is_compiling() or not compile_available():
        return False
    threshold = int(os.environ.get("OPTREG_AUTO_COMPILE_NUMEL", AUTO_COMPILE_NUMEL))
    return _numel(params) >= threshold


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


# ---------------------------------------------------------------- the backend

#: The ``torch.compile`` backend of every optreg kernel unless :func:`compile_backend` or the environment variable
#: ``OPTREG_COMPILE_BACKEND`` names another: inductor's fused kernels (C++ on CPU), the one that makes a step
#: faster. ``"aot_eager"`` traces the same code with dynamo (every branch a compiled step takes under
#: ``torch.compiler.is_compiling()``) and AOT autograd's decompositions, then runs the graph's ops eagerly:
#: seconds to compile instead of 10-40 s per kernel, no C++ compiler, no speed-up (the kit's compiled-parity check).
DEFAULT_BACKEND = "inductor"

_BACKEND: contextvars.ContextVar[str | None] = contextvars.ContextVar("optreg_compile_backend", default=None)
_ALL_SIZES: contextvars.ContextVar[bool] = contextvars.ContextVar("optreg_compile_all_sizes", default=False)


def current_backend() -> str:
    """The backend optreg's kernels compile with here: the innermost :func:`compile_backend`, else
    ``OPTREG_COMPILE_BACKEND``, else :data:`DEFAULT_BACKEND`."""
    import os

    return _BACKEND.get() or os.environ.get("OPTREG_COMPILE_BACKEND") or DEFAULT_BACKEND


@contextlib.contextmanager
def compile_backend(name: str) -> Iterator[None]:
    """Compile optreg's kernels with the ``torch.compile`` backend ``name`` inside the block (this thread or task).

    Compiled functions are kept per kernel and backend: a kernel compiled with one backend is never what
    another backend's block runs. An unknown name fails at the first compiled call, with the known names.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"compile_backend needs a torch.compile backend name, got {name!r}")
    token = _BACKEND.set(name)
    try:
        yield
    finally:
        _BACKEND.reset(token)


@functools.cache
def _checked_backend(name: str) -> str:
    """``name`` if torch.compile knows that backend, else a ``ValueError`` listing the ones it knows."""
    import torch._dynamo

    known = torch._dynamo.list_backends(exclude_tags=())
    if name not in known:
        raise ValueError(
            f"unknown torch.compile backend {name!r} (from optreg.compiling.compile_backend or "
            f"OPTREG_COMPILE_BACKEND); known: {', '.join(sorted(known))}"
        )
    return name


#: Every CPU kernel gets an OpenMP loop whose thread count is decided when it runs. Without this,
#: inductor decides from the sizes seen when compiling: a graph first compiled on small tensors
#: (biases, a unit test, or an on-disk cache entry of one) would stay single-threaded for every
#: later size, since one dynamic-shape graph serves them all. Inductor's only: other backends take no options.
_INDUCTOR_OPTIONS = {"cpp.dynamic_threads": True}


def _torch_compile(fn: Callable[..., Any], backend: str) -> Callable[..., Any]:
    options = _INDUCTOR_OPTIONS if backend == "inductor" else None
    return torch.compile(fn, dynamic=True, fullgraph=True, backend=_checked_backend(backend), options=options)


@contextlib.contextmanager
def compile_all_sizes() -> Iterator[None]:
    """Inside the block a plugin's compiled path compiles tensors of every size (:func:`compile_min_numel` is 0):
    the conformance kit's problems are far smaller than any size threshold."""
    token = _ALL_SIZES.set(True)
    try:
        yield
    finally:
        _ALL_SIZES.reset(token)


def compile_min_numel(default: int) -> int:
    """The fewest elements of a tensor a plugin's compiled path compiles for: ``default`` (a smaller tensor steps
    eagerly: a compiled call's fixed cost is more than fusing saves on it), 0 inside :func:`compile_all_sizes`."""
    return 0 if _ALL_SIZES.get() else default


# ---------------------------------------------------------------- compiled kernels

_COMPILED: dict[Any, Callable[..., Any]] = {}


def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compile(fn)`` with dynamic shapes, built once per function and backend (one call per tensor).

    Per-tensor steps are called on flattened 1-D views, so one compiled graph
    serves every parameter size; scalars arrive as 0-dim tensors, so new LR or
    step values do not recompile.
    """
    key = (fn, current_backend())
    if key not in _COMPILED:
        _COMPILED[key] = _torch_compile(_own_code(fn, key[1]), key[1])
    return _COMPILED[key]


def _own_code(fn: Callable[..., Any], backend: str) -> Callable[..., Any]:
    """``fn`` for the default backend; for another, a copy of ``fn`` with a code object of its own.

    Dynamo keeps its graphs, and counts its recompile limit, per code object, whatever the backend: a test's
    graphs of another backend would otherwise use up the limit the default backend's graphs count against.
    """
    if backend == DEFAULT_BACKEND or not isinstance(fn, types.FunctionType):
        return fn
    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__qualname__ = fn.__qualname__
    return copy


#: Per-tensor updates per compiled call. One call of a compiled function costs ~0.1-0.15 ms on CPU
#: (guard checks, dispatch) whatever the tensor size; a chunk of 4 pays it once for 4 tensors, while
#: compiling stays a few seconds (each update in the chunk is its own kernel, compiled once).
COMPILE_CHUNK = 4

_CHUNKED: dict[Any, Callable[..., Any]] = {}


def _apply_each(calls):  # the body of every chunked function: one code object per kernel, see below
    for args in calls:
        KERNEL(*args)  # noqa: F821 - a global of the per-kernel function object


def _chunked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compile`` of ``lambda calls: [fn(*args) for args in calls]``, built once per ``fn`` and backend.

    Dynamo keeps its compiled graphs (and its recompile limit) per code object, so each kernel gets
    its own copy of the loop's code object instead of sharing one cache with every other kernel.
    """
    key = (fn, current_backend())
    if key not in _CHUNKED:
        code = _apply_each.__code__.replace(co_name=f"chunked_{fn.__name__}")
        loop = types.FunctionType(code, {"KERNEL": fn, "__builtins__": builtins})
        _CHUNKED[key] = _torch_compile(loop, key[1])
    return _CHUNKED[key]


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


#: (kernel, backend) that torch.compile failed to compile here (no working C++ toolchain, an inductor bug): eager.
_EAGER_ONLY: set[Any] = set()

#: (kernel, backend) -> calls that ran compiled, and calls that ran eagerly instead (compiling failed, or past the
#: recompile limit): what the conformance kit's compiled-parity check reads to know the compiled path ran.
_RAN: Counter[Any] = Counter()
_FELL_BACK: Counter[Any] = Counter()


def _call_or_eager(fn: Callable[..., Any], compiled_call: Callable[[], Any], calls: Sequence[tuple[Any, ...]]) -> None:
    """``compiled_call()``, or ``fn`` eagerly on ``calls`` (warning once per kernel) past the recompile limit
    or where compiling fails.

    Hitting the limit, or failing to compile, raises before the graph runs, so nothing has been updated yet;
    an error the eager kernel raises as well is the kernel's own and propagates.
    """
    key = (fn, current_backend())
    if key in _EAGER_ONLY:
        _FELL_BACK[key] += len(calls)
        for args in calls:
            fn(*args)
        return
    try:
        compiled_call()
    except _dynamo_limit()[1]:
        _FELL_BACK[key] += len(calls)
        if key not in _WARNED_LIMIT:
            _WARNED_LIMIT.add(key)
            warnings.warn(
                f"optreg: the compiled {fn.__name__} reached {RECOMPILE_LIMIT} graphs (one set per distinct "
                "group of constant options); the remaining updates run eagerly (slower, same result)",
                RuntimeWarning, stacklevel=4,
            )
        for args in calls:
            fn(*args)
    except Exception as exc:  # noqa: BLE001 - torch.compile cannot compile here: eager, said once
        for args in calls:
            fn(*args)  # the kernel's own error, if it has one, is raised here
        _EAGER_ONLY.add(key)
        _FELL_BACK[key] += len(calls)
        warnings.warn(
            f"optreg: torch.compile could not compile {fn.__name__} here ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); it runs eagerly from now on (slower, same "
            "result)", RuntimeWarning, stacklevel=4,
        )
    else:
        _RAN[key] += len(calls)


def call_compiled(fn: Callable[..., Any], compiled_fn: Callable[..., Any], *args: Any) -> None:
    """``compiled_fn(*args)`` (``fn`` compiled by the plugin itself), or ``fn(*args)`` eagerly, with one warning,
    where torch.compile cannot compile here or past the recompile limit."""
    _call_or_eager(fn, functools.partial(compiled_fn, *args), (args,))


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
