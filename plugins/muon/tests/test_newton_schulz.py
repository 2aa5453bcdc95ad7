"""Newton-Schulz: coefficient presets, the bands they promise, and what preconditioning buys."""

import pytest
import torch
from optreg_muon.functional.newton_schulz import (
    COEFFICIENT_PRESETS,
    PRECONDITIONINGS,
    gains_along_input,
    newton_schulz,
    polar_factor,
    resolve_coefficients,
    singular_value_band,
)


def _random_matrix(rows: int, cols: int, spectrum: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if spectrum is None:
        return torch.randn(rows, cols, generator=g)
    k = min(rows, cols)
    U, _ = torch.linalg.qr(torch.randn(rows, k, generator=g))
    V, _ = torch.linalg.qr(torch.randn(cols, k, generator=g))
    return U @ torch.diag(spectrum) @ V.T


#: The quintic maps [0, 1] into [0, 1.2024]: its band ceiling, whatever the input.
CEILING = 1.21


def _composition(coefficients, x: torch.Tensor) -> torch.Tensor:
    for a, b, c in coefficients:
        x = a * x + b * x**3 + c * x**5
    return x


def test_resolve_coefficients() -> None:
    assert resolve_coefficients("muon", 3) == ((3.4445, -4.7750, 2.0315),) * 3
    assert resolve_coefficients((1.0, 2.0, 3.0), 2) == ((1.0, 2.0, 3.0),) * 2
    assert resolve_coefficients([(1, 2, 3), (4, 5, 6)], 3) == ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0), (4.0, 5.0, 6.0))
    assert len(resolve_coefficients("polar_express", 4)) == 4
    pe = COEFFICIENT_PRESETS["polar_express"]
    first = (8.28721201814563 / 1.01, -23.595886519098837 / 1.01**3, 17.300387312530933 / 1.01**5)
    assert pe[0] == pytest.approx(first)
    assert pe[-1] == (1.875, -1.25, 0.375)  # the converged step carries no safety factor
    with pytest.raises(ValueError, match="unknown Newton-Schulz preset"):
        resolve_coefficients("nope", 5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("preconditioning", PRECONDITIONINGS)
def test_quintic_band_every_preconditioning(preconditioning: str, dtype: torch.dtype) -> None:
    """A random 512x256 input lands in [0.6, 1.2] after 5 steps of the default quintic."""
    G = _random_matrix(512, 256)
    X = newton_schulz(G, resolve_coefficients("muon", 5), preconditioning=preconditioning, dtype=dtype)
    assert X.shape == G.shape and X.dtype == dtype
    lo, hi = singular_value_band(X)
    assert lo >= 0.6 and hi <= 1.2, (lo, hi)


@pytest.mark.parametrize("preset", sorted(COEFFICIENT_PRESETS))
def test_singular_values_follow_the_scalar_polynomials(preset: str) -> None:
    """With Frobenius normalisation each singular value goes through the composed scalar polynomial."""
    spectrum = torch.logspace(0, -2, 64)
    G = _random_matrix(96, 64, spectrum, seed=1)
    coefficients = resolve_coefficients(preset, 5)
    X = newton_schulz(G, coefficients, dtype=torch.float32, backend="torch")
    expected = _composition(coefficients, spectrum.double() / spectrum.double().norm()).sort().values
    got = torch.linalg.svdvals(X.double()).sort().values
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)


def test_preconditioning_reaches_the_band_in_fewer_steps() -> None:
    """On a 512x256 input with condition number 100, frobenius needs 5 quintic steps for [0.6, 1.21];
    spectral, aol and schatten start closer to 1 and get there in 4 (and are tighter at equal steps)."""
    G = _random_matrix(512, 256, torch.logspace(0, -2, 256), seed=2)
    quintic = COEFFICIENT_PRESETS["muon"][0]

    def band(pc: str, steps: int) -> tuple[float, float]:
        return singular_value_band(newton_schulz(G, (quintic,) * steps, preconditioning=pc, dtype=torch.float32))

    frob4, frob5 = band("frobenius", 4), band("frobenius", 5)
    assert frob4[0] < 0.6 and frob5[0] >= 0.6 and frob5[1] <= CEILING, (frob4, frob5)
    for pc in ("spectral", "aol", "schatten"):
        lo, hi = band(pc, 4)
        assert lo >= 0.6 and hi <= CEILING, (pc, lo, hi)
        assert band(pc, 3)[0] > band("frobenius", 3)[0] * 2, pc


def test_fast_presets_match_the_default_band() -> None:
    """The bench's fast configurations reach the default's band (5 frobenius steps) in 4 steps."""
    G = _random_matrix(512, 256, torch.logspace(0, -2, 256), seed=3)
    ref_lo, ref_hi = singular_value_band(newton_schulz(G, resolve_coefficients("muon", 5), dtype=torch.float32))
    for coefficients in ("muon", "turbo_aol"):
        lo, hi = singular_value_band(
            newton_schulz(G, resolve_coefficients(coefficients, 4), preconditioning="aol", dtype=torch.float32)
        )
        assert lo >= ref_lo - 0.02 and hi <= max(ref_hi, 1.2) + 1e-3, (coefficients, lo, hi, ref_lo, ref_hi)


def _orthogonality(X: torch.Tensor, G: torch.Tensor) -> tuple[float, float]:
    """max |sigma - 1| of ``X``, and its relative Frobenius distance to the exact polar factor of ``G``."""
    X = X.double()
    P = polar_factor(G)
    return float((torch.linalg.svdvals(X) - 1).abs().max()), float((X - P).norm() / P.norm())


@pytest.mark.parametrize("shape", [(256, 1024), (256, 256)])
@pytest.mark.parametrize("seed", [0, 1])
def test_turbo_aol_preset_is_as_orthogonal_as_the_default(shape: tuple[int, int], seed: int) -> None:
    """The 4-step preset (turbo_aol coefficients, aol preconditioning; 4/5 of the default's products) is no
    less orthogonal than the default (quintic x5, frobenius) on Gaussian matrices, bf16 as in a step: by max
    |sigma - 1| and by the distance to the exact polar factor. Measured on these inputs: max |sigma - 1|
    0.059 vs 0.318 (256x1024), 0.90-0.95 vs 0.93-0.96 (256x256: the smallest singular value of a square
    Gaussian matrix is near 0, where neither reaches 1); distance 0.033 vs 0.154 and 0.08-0.09 vs 0.21.
    (On real gradients the distance is not equal: docs/muon.md, Benchmark.)"""
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    default = _orthogonality(newton_schulz(G, resolve_coefficients("muon", 5)), G)
    preset = _orthogonality(newton_schulz(G, resolve_coefficients("turbo_aol", 4), preconditioning="aol"), G)
    assert preset[0] <= default[0] + 0.005, (preset, default)
    assert preset[1] <= default[1] + 0.005, (preset, default)


@pytest.mark.parametrize("shape", [(256, 1024), (768, 256)])
def test_turbo_aol_preset_is_as_orthogonal_as_the_default_on_a_gradient_like_spectrum(shape: tuple[int, int]) -> None:
    """Training gradients are far from Gaussian: their singular values decay over orders of magnitude (here
    1 to 1e-4, geometric, random singular vectors). Below ~1% of the largest no 4-5 step Newton-Schulz (torch's
    included) lifts a singular value near 1, so the plain max |sigma - 1| is ~1 for every configuration; the
    measure is the gain along the input's singular pairs: max |d - 1| where sigma >= 1% of the largest, and the
    mean |d - 1| over all. Measured: 0.14 vs 0.32 and 0.41 vs 0.46 (docs/muon.md: 0.069 vs 0.318 and 0.246 vs
    0.279 on char_lm's real gradients)."""
    g = torch.Generator().manual_seed(0)
    k = min(shape)
    U, _ = torch.linalg.qr(torch.randn(shape[0], k, generator=g))
    V, _ = torch.linalg.qr(torch.randn(shape[1], k, generator=g))
    G = (U * torch.logspace(0, -4, k)) @ V.T
    default = gains_along_input(newton_schulz(G, resolve_coefficients("muon", 5)), G)
    preset = gains_along_input(newton_schulz(G, resolve_coefficients("turbo_aol", 4), preconditioning="aol"), G)
    assert preset[0] <= default[0] and preset[1] <= default[1], (preset, default)


def test_polar_express_converges_where_the_quintic_plateaus() -> None:
    G = _random_matrix(128, 64, seed=4)
    pe = singular_value_band(newton_schulz(G, resolve_coefficients("polar_express", 8), dtype=torch.float32))
    quintic = singular_value_band(newton_schulz(G, resolve_coefficients("muon", 8), dtype=torch.float32))
    assert pe[1] - pe[0] < 0.01 and quintic[1] - quintic[0] > 0.3, (pe, quintic)


def test_spectral_never_overshoots_on_adversarial_start() -> None:
    """Equal diagonal Gram matrices (whose top eigenvector is orthogonal to +-1 start vectors) stay finite."""
    G = torch.tensor([[1.5, 1.4], [0.8, 0.97], [0.15, 0.59], [-0.46, 0.27]])
    for dtype in (torch.float32, torch.bfloat16):
        X = newton_schulz(G, resolve_coefficients("polar_express", 6), preconditioning="spectral", dtype=dtype)
        lo, hi = singular_value_band(X)
        assert lo > 0.9 and hi < 1.1, (dtype, lo, hi)


#: bf16 keeps 8 significant bits: one ulp on [1, 2) is 2^-7, and smaller below 1.
BF16_ULP_AT_1 = 2.0**-7


def test_batched_equals_one_by_one_and_tall_inputs() -> None:
    """A batch gives each matrix's own result; a tall input gives the transposed result of its transpose.

    Not bit for bit: the batch runs batched products (baddbmm) and the tall input a transposed view, whose
    bf16 rounding may differ from the per-matrix, contiguous products (measured: one ulp on some entries
    of small matrices on an AVX-512-bf16 CPU; identical on others). Every output entry has magnitude
    <= 1.21 (the quintic's ceiling bounds the spectral norm), where a bf16 ulp is at most 2^-7; two
    rounding orders land within 2 ulps, so entries agree to 2 * 2^-7 and the whole to 2^-7 relative
    (Frobenius). A real mix-up is far outside that: normalising by the batch's norm instead of each
    matrix's moves entries by 0.13 (30% relative) on this input.
    """
    G = torch.randn(3, 40, 24, generator=torch.Generator().manual_seed(0))
    coefficients = resolve_coefficients("muon", 5)
    batched = newton_schulz(G, coefficients)

    def assert_close(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
        got, expected = got.float(), expected.float()
        torch.testing.assert_close(got, expected, rtol=0, atol=2 * BF16_ULP_AT_1, msg=lambda m: f"{what}: {m}")
        relative = float((got - expected).norm() / expected.norm())
        assert relative <= BF16_ULP_AT_1, (what, relative)

    for i in range(3):
        assert_close(batched[i], newton_schulz(G[i], coefficients), f"batch entry {i}")
    wide = newton_schulz(G[0].T.contiguous(), coefficients)
    assert_close(wide, batched[0].T, "wide input vs the transposed tall result")
    single = newton_schulz(G[0], coefficients)
    assert_close(wide, single.T, "wide input vs its transpose, one matrix each")


def test_bf16_emulation_is_close_to_native_bf16() -> None:
    """On CPUs without native bf16 GEMMs the auto backend runs bf16 steps as fp32 GEMMs rounded to bf16."""
    G = torch.randn(64, 48)
    coefficients = resolve_coefficients("muon", 5)
    native = newton_schulz(G, coefficients, backend="torch")
    auto = newton_schulz(G, coefficients, backend="auto")
    assert auto.dtype == native.dtype == torch.bfloat16
    torch.testing.assert_close(auto.float(), native.float(), rtol=0.05, atol=0.02)


def test_zero_and_empty_inputs() -> None:
    coefficients = resolve_coefficients("muon", 5)
    for pc in PRECONDITIONINGS:
        out = newton_schulz(torch.zeros(8, 4), coefficients, preconditioning=pc)
        assert torch.equal(out.float(), torch.zeros(8, 4)), pc
    assert newton_schulz(torch.zeros(0, 4), coefficients).shape == (0, 4)
