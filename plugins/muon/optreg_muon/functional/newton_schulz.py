"""Newton-Schulz orthogonalization: coefficient presets, preconditioning and the torch kernel.

``newton_schulz(G, coefficients)`` returns an approximation of the polar factor
``U V^T`` of ``G = U S V^T`` (for a batch of matrices ``(..., m, n)``) by the odd
quintic iteration ``X <- a X + b (X X^T) X + c (X X^T)^2 X``, one ``(a, b, c)``
triple per step. Each step costs one Gram product ``A = X X^T`` (on the short
side), one symmetric square ``B = b A + c A A`` and one ``B X``.

Before the iteration ``X`` must have spectral norm at most 1. ``preconditioning``
chooses how (all of them first divide by the Frobenius norm, which torch does
too, so nothing under- or overflows; the others then reuse the first step's Gram
matrix, so they cost O(m^2) extra, not another product):

- ``"frobenius"``: ``X / ||X||_F`` only, exactly as ``torch.optim.Muon``.
- ``"schatten"``: ``X / ||X||_S4`` with the Schatten-4 norm ``||X X^T||_F^(1/2)``,
  a guaranteed bound on the spectral norm that is much tighter than ``||X||_F``.
- ``"spectral"``: ``X / sigma`` with ``sigma`` a power-iteration estimate of the
  spectral norm on the Gram matrix (times a 2% margin, capped by the Schatten-4
  bound so it never scales up more than that guaranteed bound allows).
- ``"aol"``: AOL row rescaling (Prach & Lampert 2022, used by Turbo-Muon):
  ``X <- D X`` with ``D = diag(sum_j |A_ij|)^(-1/2)``, which guarantees spectral
  norm <= 1 and brings ``X`` closer to orthogonal. It is a diagonal, not scalar,
  rescaling, so the polar factor is that of ``D X`` rather than of ``X``.

The tighter the start, the fewer steps reach a given band of singular values
(see the orthogonality tests). The torch kernel runs in ``dtype`` (bf16 by
default, as torch does; float32 or float64 on request, the preconditioning then
in the same precision, never below float32). On CPUs without native bf16 matrix units (no AVX512-BF16
or AMX, e.g. AVX2-only machines) oneDNN's bf16 GEMMs are up to two orders of
magnitude slower than fp32 ones, so there the bf16 iteration runs its products
as fp32 GEMMs on the bf16 values and rounds each result to bf16 (same numerics
class: bf16 storage, fp32 accumulation); ``backend="torch"`` forces torch's own
bf16 GEMMs: on one matrix the very ops of ``torch.optim.Muon``, hence its result bit for
bit. A batch ``(b, m, n)`` runs batched products (``baddbmm``), whose bf16 rounding may
differ from the per-matrix ``addmm`` (it does on small matrices on CPUs with native bf16)
by about one bf16 ulp per entry: close to, not bit-identical with, one call per matrix.
Where ``auto`` runs torch's products natively on CPU (bf16 with AVX512-BF16/AMX, float32,
float64) it runs the lean kernel (:func:`_lean_iteration`): the same products into buffers
reused across steps, and from :data:`SYMMETRIC_MIN_SIDE` on the two symmetric products by
halves (3/4 of their FLOPs); on the machine it was measured on it equals ``backend="torch"``
bit for bit in bf16 (float32 within rounding), and it takes 0.86-0.90 of its time.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal

import torch

__all__ = [
    "COEFFICIENT_PRESETS",
    "PRECONDITIONINGS",
    "Coefficients",
    "native_bf16_gemm",
    "newton_schulz",
    "newton_schulz_flops",
    "resolve_coefficients",
]

Triple = tuple[float, float, float]
Coefficients = tuple[Triple, ...]
Preconditioning = Literal["frobenius", "spectral", "aol", "schatten"]
Backend = Literal["auto", "torch", "triton"]

PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")


def _with_safety(triples: Sequence[Triple], factor: float) -> Coefficients:
    """``p(x / factor)`` for every step but the last (the last one is already converged)."""
    scaled = [(a / factor, b / factor**3, c / factor**5) for a, b, c in triples[:-1]]
    return tuple(scaled) + (tuple(triples[-1]),)


#: Named coefficient sequences. A sequence shorter than ``ns_steps`` repeats its last triple.
COEFFICIENT_PRESETS: dict[str, Coefficients] = {
    # Keller Jordan's quintic (the Muon blog post; torch.optim.Muon's default): one triple for every step.
    "muon": ((3.4445, -4.7750, 2.0315),),
    # Polar Express (Amsel, Persson, Musco, Gower 2025, arXiv 2505.16932, Algorithm 1): the optimal
    # degree-5 composition for singular values in [1e-3, 1], with the paper's 1.01 safety factor.
    "polar_express": _with_safety(
        (
            (8.28721201814563, -23.595886519098837, 17.300387312530933),
            (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
            (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
            (3.3184196573706015, -2.488488024314874, 0.51004894012372),
            (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
            (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
            (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
            (1.875, -1.25, 0.375),
        ),
        1.01,
    ),
    # The per-step quintics used by the Dion reference implementation (Ahn et al. 2025).
    "dion": (
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ),
    # Turbo-Muon's 4-step sequence, tuned for inputs preconditioned by AOL (Boissin et al. 2025,
    # flash-newton-schulz); use it with preconditioning = "aol" and ns_steps = 4.
    "turbo_aol": (
        (4.6051, -9.6552, 5.6769),
        (4.7505, -6.0861, 2.1790),
        (2.7763, -2.3190, 0.5523),
        (2.4231, -2.2861, 0.8193),
    ),
}


def resolve_coefficients(
    ns_coefficients: str | Sequence[float] | Sequence[Sequence[float]], ns_steps: int
) -> Coefficients:
    """The ``ns_steps`` triples for a preset name, one triple, or a per-step list of triples.

    A list shorter than ``ns_steps`` repeats its last triple; a longer one is cut.
    """
    if ns_steps < 0:
        raise ValueError(f"ns_steps must be >= 0, got {ns_steps}")
    if isinstance(ns_coefficients, str):
        if ns_coefficients not in COEFFICIENT_PRESETS:
            raise ValueError(
                f"unknown Newton-Schulz preset {ns_coefficients!r}; presets: {', '.join(COEFFICIENT_PRESETS)}"
            )
        triples = COEFFICIENT_PRESETS[ns_coefficients]
    elif len(ns_coefficients) and all(isinstance(v, (int, float)) for v in ns_coefficients):
        triples = (tuple(float(v) for v in ns_coefficients),)  # type: ignore[assignment]
    else:
        triples = tuple(tuple(float(v) for v in t) for t in ns_coefficients)  # type: ignore[union-attr]
    if not triples or any(len(t) != 3 for t in triples):
        raise ValueError("Newton-Schulz coefficients must be (a, b, c) triples")
    out = list(triples[:ns_steps])
    out += [triples[-1]] * (ns_steps - len(out))
    return tuple(out)  # type: ignore[return-value]


@functools.cache
def _cpu_native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def native_bf16_gemm(device: torch.device) -> bool:
    """Whether bf16 matrix products run natively fast on ``device`` (CUDA, or a CPU with AVX512/AMX bf16)."""
    if device.type == "cpu":
        return _cpu_native_bf16()
    return True


def newton_schulz_flops(m: int, n: int, steps: int) -> int:
    """Nominal FLOPs of ``steps`` iterations on an ``m x n`` matrix (full, not symmetric-reduced, products)."""
    small, large = min(m, n), max(m, n)
    per_step = 2 * small * small * large + 2 * small**3 + 2 * small * small * large
    return steps * per_step


# ---------------------------------------------------------------- product kernels


class _TorchProducts:
    """The three products of a step with torch ops; ``emulate`` runs bf16 steps as fp32 GEMMs rounded to bf16.

    ``lean`` (the ``auto`` kernel on CPU where the products run natively): :func:`_lean_iteration` runs the
    same products into buffers reused across steps and, from :data:`SYMMETRIC_MIN_SIDE` on, computes the two
    symmetric ones by halves.
    """

    def __init__(self, dtype: torch.dtype, emulate: bool, lean: bool = False) -> None:
        self.dtype = dtype
        self.emulate = emulate
        self.lean = lean and not emulate
        self.work_dtype = torch.float32 if emulate else dtype

    def _round(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.dtype).to(torch.float32) if self.emulate else t

    def start(self, G: torch.Tensor) -> torch.Tensor:
        """A private copy of ``G`` in the working representation (values representable in ``dtype``)."""
        X = G.to(self.dtype, copy=True)
        return X.to(torch.float32) if self.emulate else X

    def finish(self, X: torch.Tensor) -> torch.Tensor:
        return X.to(self.dtype)

    def normalize(self, X: torch.Tensor, eps: float) -> torch.Tensor:
        """``X / ||X||_F`` per matrix; for one matrix the very ops of torch.optim.Muon (bit-identical)."""
        if X.ndim == 2:
            norm = X.norm()
        else:
            norm = torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True)
        if self.emulate:
            return self._round(X / self._round(norm).clamp(min=eps))
        return X.div_(norm.clamp(min=eps))

    def gram(self, X: torch.Tensor) -> torch.Tensor:
        return self._round(X @ X.mT)

    def poly(self, A: torch.Tensor, b: float, c: float) -> torch.Tensor:
        fn = torch.addmm if A.ndim == 2 else torch.baddbmm
        return self._round(fn(A, A, A, beta=b, alpha=c))

    def apply(self, X: torch.Tensor, B: torch.Tensor, a: float) -> torch.Tensor:
        fn = torch.addmm if X.ndim == 2 else torch.baddbmm
        return self._round(fn(X, B, X, beta=a))

    def cast(self, t: torch.Tensor) -> torch.Tensor:
        """An fp32 tensor into the working representation."""
        return self._round(t.to(self.work_dtype)) if self.emulate else t.to(self.dtype)


#: Smallest short side from which the lean CPU kernel computes ``X X^T`` and ``b A + c A A`` by halves:
#: the top rows (both column blocks) and the bottom-right block, the bottom-left block mirrored from the
#: top-right one. Both products are symmetric, so that is 3/4 of their FLOPs (5/6 of a step's on a
#: square matrix). Every entry is the same dot product as in the whole product, and on the machine it was
#: measured on the halves equal the whole products bit for bit. Measured there (2-core AMD EPYC, native
#: bf16, one thread, CPU time of a 5-step bf16 iteration against whole products): 0.94 at 512x512, 0.88 at
#: 1024x1024 and 1024x4096, 0.96 on a batch of six 1024x1024; 1.03 on a batch of 256x256 (small GEMMs
#: lose more to the extra calls than the halves save).
SYMMETRIC_MIN_SIDE = 512


def _gram_into(X: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out <- X X^T`` (``X``: ``(..., m, n)``, ``m <= n``), by halves from :data:`SYMMETRIC_MIN_SIDE` rows."""
    mm = torch.mm if X.ndim == 2 else torch.bmm
    m = X.shape[-2]
    if m < SYMMETRIC_MIN_SIDE:
        return mm(X, X.mT, out=out)
    h = m // 2
    bottom = X[..., h:, :]
    mm(X[..., :h, :], X.mT, out=out[..., :h, :])
    mm(bottom, bottom.mT, out=out[..., h:, h:])
    out[..., h:, :h] = out[..., :h, h:].mT
    return out


def _poly_into(A: torch.Tensor, b: float, c: float, out: torch.Tensor) -> torch.Tensor:
    """``out <- b A + c A A`` for a symmetric ``A``, by halves from :data:`SYMMETRIC_MIN_SIDE` rows."""
    addmm = torch.addmm if A.ndim == 2 else torch.baddbmm
    m = A.shape[-1]
    if m < SYMMETRIC_MIN_SIDE:
        return addmm(A, A, A, beta=b, alpha=c, out=out)
    h = m // 2
    top = A[..., :h, :]
    addmm(top, top, A, beta=b, alpha=c, out=out[..., :h, :])
    addmm(A[..., h:, h:], A[..., h:, :], A[..., :, h:], beta=b, alpha=c, out=out[..., h:, h:])
    out[..., h:, :h] = out[..., :h, h:].mT
    return out


def _lean_iteration(
    X: torch.Tensor, coefficients: Coefficients, preconditioning: str, eps: float, products: _TorchProducts
) -> torch.Tensor:
    """The steps of the lean kernel on a normalised ``X`` (``m <= n``) that the caller owns.

    The products of :class:`_TorchProducts` (the same ops with ``out=``), into a Gram buffer, a polynomial
    buffer and one spare ``X`` reused by every step (``X`` and the spare swap roles), so a step allocates
    nothing; by halves from :data:`SYMMETRIC_MIN_SIDE` (:func:`_gram_into`, :func:`_poly_into`).
    """
    addmm = torch.addmm if X.ndim == 2 else torch.baddbmm
    A = X.new_empty((*X.shape[:-1], X.shape[-2]))
    B = torch.empty_like(A)
    spare = None
    for step, (a, b, c) in enumerate(coefficients):
        gram = _gram_into(X, A)
        if step == 0 and preconditioning != "frobenius":
            X, gram = _precondition(X, gram, preconditioning, eps, products)
        _poly_into(gram, b, c, B)
        if spare is None:
            spare = torch.empty(X.shape, dtype=X.dtype, device=X.device)
        addmm(X, B, X, beta=a, out=spare)
        # the old X becomes the next spare when it is a whole buffer (not the transposed view of a tall input)
        X, spare = spare, (X if X.is_contiguous() else None)
    return X


def _products(backend: Backend, dtype: torch.dtype, device: torch.device):
    lean = backend == "auto" and device.type == "cpu"
    if dtype == torch.float64:
        if backend == "triton":
            raise ValueError("the Triton Newton-Schulz kernels run in bfloat16 or float32; use ns_backend "
                             "'torch' or 'auto' for float64")
        return _TorchProducts(dtype, emulate=False, lean=lean)
    if backend == "triton" or (backend == "auto" and device.type == "cuda"):
        from optreg_muon.functional import triton_ns

        if triton_ns.available(device):
            return triton_ns.TritonProducts(dtype)
        if backend == "triton":
            raise RuntimeError(triton_ns.unavailable_reason(device))
    emulate = backend == "auto" and dtype == torch.bfloat16 and not native_bf16_gemm(device)
    return _TorchProducts(dtype, emulate, lean=lean)


# ---------------------------------------------------------------- preconditioning


#: Power iterations and safety margin of the "spectral" preconditioning. Power iteration approaches
#: the top eigenvalue from below; on Gaussian matrices (the hardest case: a clustered top of the
#: spectrum) 16 iterations come within about 2.5% of sigma_max, so the 10% margin keeps sigma <= 1.
SPECTRAL_POWER_ITERS = 16
SPECTRAL_MARGIN = 1.1


@functools.lru_cache(maxsize=64)
def _start_weights(m: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(0x5EED + m)
    return torch.randn(m, 1, generator=g, dtype=dtype).to(device)


def _power_start(A32: torch.Tensor) -> torch.Tensor:
    """A start vector with generic overlap with the top eigenvector: row norms times fixed Gaussian weights.

    (Equal-magnitude weights such as +-1 can be exactly orthogonal to the top eigenvector of a
    matrix with equal diagonal entries; continuous random weights are not, except on a null set.)
    """
    m = A32.shape[-1]
    norms = A32.diagonal(dim1=-2, dim2=-1).clamp(min=0).sqrt().unsqueeze(-1) + 1e-12
    return norms * _start_weights(m, A32.device, A32.dtype)


#: Elements per chunk of :func:`_scale_rows_`.
_SCALE_CHUNK = 2**16


def _scale_rows_(t: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
    """``t *= rows * cols`` in place (``rows``: ``(..., m, 1)``, ``cols``: ``(..., 1, n)``), a chunk of rows at a time.

    Each factor ``rows_i * cols_j`` and each product are computed in the factors' dtype and rounded once to
    ``t``'s, the values of ``(t.to(work) * (rows * cols)).to(t.dtype)``. A mixed-dtype in-place product makes a
    temporary as large as ``t`` in the wider dtype (and the factor matrix is another): by chunks of about
    ``_SCALE_CHUNK`` elements they stay small, where whole ones cost page faults on CPU at every step.
    """
    m = t.shape[-2]
    per_row = max(1, t.numel() // max(1, m))  # elements of one row index over the batch
    step = max(1, _SCALE_CHUNK // per_row)
    for start in range(0, m, step):
        chunk = slice(start, start + step)
        factor = rows[..., chunk, :] if cols is None else rows[..., chunk, :] * cols
        t[..., chunk, :].mul_(factor)
    return t


def _precondition(
    X: torch.Tensor, A: torch.Tensor, kind: str, eps: float, products
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rescale a Frobenius-normalised ``X`` (and its Gram matrix ``A``) by ``kind``.

    Computed in fp32, or in ``A``'s dtype when that is wider (float64 Newton-Schulz stays float64). The lean
    kernel's ``X`` and ``A`` are its own buffers: they are scaled in place (the same values: an in-place
    product of a bf16 tensor and an fp32 one is computed in fp32 and rounded once, as the cast is).
    """
    work = torch.promote_types(A.dtype, torch.float32)
    in_place = getattr(products, "lean", False)
    if kind == "aol":
        d = A.abs().sum(dim=-1, dtype=work).clamp(min=eps).rsqrt()  # (..., m)
        if in_place:
            return _scale_rows_(X, d.unsqueeze(-1)), _scale_rows_(A, d.unsqueeze(-1), d.unsqueeze(-2))
        X = products.cast(X.to(work) * d.unsqueeze(-1))
        A = products.cast(A.to(work) * (d.unsqueeze(-1) * d.unsqueeze(-2)))  # D A D, exactly symmetric
        return X, A
    A32 = A.to(work)
    schatten = torch.linalg.matrix_norm(A32, keepdim=True).clamp(min=eps)  # ||X||_S4^2 >= sigma_max^2
    if kind == "schatten":
        lam = schatten
    elif kind == "spectral":
        v = _power_start(A32)
        for _ in range(SPECTRAL_POWER_ITERS):
            v = A32 @ v
            v = v / torch.linalg.vector_norm(v, dim=-2, keepdim=True).clamp(min=1e-30)
        rayleigh = (v * (A32 @ v)).sum(dim=-2, keepdim=True)  # <= lambda_max, close to it
        # Guaranteed lower bounds on lambda_max guard against a start vector with tiny overlap:
        # every diagonal entry, and ||A||_F / sqrt(m).
        m = A32.shape[-1]
        floor = torch.maximum(
            A32.diagonal(dim1=-2, dim2=-1).amax(dim=-1, keepdim=True).unsqueeze(-1), schatten / math.sqrt(m)
        )
        rayleigh = torch.maximum(rayleigh, floor)
        lam = torch.minimum(rayleigh * SPECTRAL_MARGIN**2, schatten).clamp(min=eps)
    else:
        raise ValueError(f"unknown preconditioning {kind!r}; choose one of {', '.join(PRECONDITIONINGS)}")
    if in_place:
        return X.mul_(lam.rsqrt()), A.div_(lam)
    X = products.cast(X.to(work) * lam.rsqrt())
    A = products.cast(A32 / lam)
    return X, A


# ---------------------------------------------------------------- the iteration


def newton_schulz(
    G: torch.Tensor,
    coefficients: Coefficients,
    *,
    preconditioning: Preconditioning = "frobenius",
    eps: float = 1e-7,
    dtype: torch.dtype = torch.bfloat16,
    backend: Backend = "auto",
    overwrite: bool = False,
) -> torch.Tensor:
    """Approximate polar factor of ``G`` (shape ``(..., m, n)``), returned in ``dtype``.

    ``coefficients``: one ``(a, b, c)`` per step (see :func:`resolve_coefficients`).
    ``backend``: ``"torch"`` (torch's own GEMMs in ``dtype``), ``"triton"`` (symmetric
    Triton kernels; CUDA, or CPU under ``TRITON_INTERPRET=1``) or ``"auto"`` (Triton on
    CUDA when installed; on CPU torch, with fp32 GEMMs for bf16 where bf16 is not native,
    and the lean kernel where they are native: buffers reused across steps, the symmetric
    products by halves from :data:`SYMMETRIC_MIN_SIDE`). ``overwrite``: ``G`` is scratch the
    call may work in (no private copy) when it is already in the working dtype.
    """
    if G.ndim < 2:
        raise ValueError(f"newton_schulz needs a matrix or a batch of matrices, got shape {tuple(G.shape)}")
    if preconditioning not in PRECONDITIONINGS:
        raise ValueError(f"unknown preconditioning {preconditioning!r}; choose one of {', '.join(PRECONDITIONINGS)}")
    m, n = G.shape[-2:]
    shape = G.shape
    if G.ndim > 3:
        G = G.reshape(-1, m, n)
    if G.numel() == 0:
        return torch.zeros(shape, dtype=dtype, device=G.device)
    products = _products(backend, dtype, G.device)
    X = G if overwrite and G.dtype == products.work_dtype == dtype else products.start(G)
    transposed = m > n
    if transposed:
        X = X.mT
    X = products.normalize(X, eps)
    if getattr(products, "lean", False) and coefficients:
        X = _lean_iteration(X, coefficients, preconditioning, eps, products)
    else:
        for step, (a, b, c) in enumerate(coefficients):
            A = products.gram(X)
            if step == 0 and preconditioning != "frobenius":
                X, A = _precondition(X, A, preconditioning, eps, products)
            B = products.poly(A, b, c)
            X = products.apply(X, B, a)
        if not coefficients and preconditioning != "frobenius":
            X, _ = _precondition(X, products.gram(X), preconditioning, eps, products)
    if transposed:
        X = X.mT
    return products.finish(X).reshape(shape)


def singular_value_band(X: torch.Tensor) -> tuple[float, float]:
    """(min, max) singular value of a matrix (fp64 SVD), for tests and benchmarks."""
    s = torch.linalg.svdvals(X.double())
    return float(s.min()), float(s.max())


def polar_factor(G: torch.Tensor) -> torch.Tensor:
    """The exact polar factor ``U V^T`` of ``G`` by SVD (fp64), for tests."""
    U, _, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    return U @ Vh


def gains_along_input(X: torch.Tensor, G: torch.Tensor, floor: float = 1e-2) -> tuple[float, float]:
    """How orthogonal ``X`` (Newton-Schulz of ``G``) is along ``G``'s own singular pairs, for tests and benchmarks.

    The gain ``d_i = u_i^T X v_i`` is 1 for the exact polar factor. Returns max ``|d_i - 1|`` over the pairs whose
    singular value is at least ``floor`` times the largest (the directions that carry a gradient: below ~1% no
    4-5 step Newton-Schulz lifts a singular value near 1, so the plain max ``|sigma - 1|`` of a real gradient is
    ~1 for every configuration), and the mean ``|d_i - 1|`` over all pairs (fp64 SVD).
    """
    U, S, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    d = torch.diagonal(U.mT @ X.double() @ Vh.mT)
    return float((d[S / S.max() >= floor] - 1).abs().max()), float((d - 1).abs().mean())
