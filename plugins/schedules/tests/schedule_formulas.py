"""The schedules' closed forms, written out from their definitions (docs/schedules.md), for the tests.

Each takes the group's initial LR ``lr0``, the point ``c`` (steps or tokens) and the
run length ``T``, plus the schedule's options as keywords.
"""

from __future__ import annotations

import math


def warmup(lr0: float, c: float, w: int, wmin: float) -> float:
    return wmin + (lr0 - wmin) * c / w


def constant_with_warmup(lr0, c, T, *, w, wmin=0.0):
    return warmup(lr0, c, w, wmin) if c < w else lr0


def linear_with_warmup(lr0, c, T, *, w, alpha=0.1, wmin=0.0):
    if c < w:
        return warmup(lr0, c, w, wmin)
    end = alpha * lr0
    if c >= T:
        return end
    return lr0 + (end - lr0) * (c - w) / (T - w)


def cos_with_warmup(lr0, c, T, *, w, alpha=0.1, wmin=0.0):
    if c < w:
        return warmup(lr0, c, w, wmin)
    eta = alpha * lr0
    if c >= T:
        return eta
    return eta + (lr0 - eta) * (1 + math.cos(math.pi * (c - w) / (T - w))) / 2


def half_cos_with_warmup(lr0, c, T, *, w, alpha=0.1, wmin=0.0):
    # The second half of a cosine of length 2 (T - w) that would peak at lr0.
    eta = alpha * lr0
    if c < w:
        return warmup((lr0 + eta) / 2, c, w, wmin)
    if c >= T:
        return eta
    n = T - w
    return eta + (lr0 - eta) * (1 + math.cos(math.pi * ((c - w) + n) / (2 * n))) / 2


def cos_with_warmup_and_linear_decay(lr0, c, T, *, w, d, alpha=0.1, wmin=0.0, dmin=0.0):
    s = T - d
    if c < s:
        return cos_with_warmup(lr0, c, T, w=w, alpha=alpha, wmin=wmin)
    if c >= T:
        return dmin
    top = cos_with_warmup(lr0, s, T, w=w, alpha=alpha, wmin=wmin)
    return dmin + (top - dmin) * (T - c) / d


def inv_sqrt_with_warmup(lr0, c, T, *, w, alpha=0.1, wmin=0.0):
    if c < w:
        return warmup(lr0, c, w, wmin)
    eta = alpha * lr0
    return eta + (lr0 - eta) * math.sqrt(w / c)


def exponential(lr0, c, T, *, lr_min):
    return lr0 if c >= T else lr_min * (lr0 / lr_min) ** (c / T)


def decay_factor(shape: str, p: float) -> float:
    return {"linear": 1 - p, "cosine": (1 + math.cos(math.pi * p)) / 2, "sqrt": 1 - math.sqrt(p)}[shape]


def wsd(lr0, c, T, *, w, d, shape="linear", wmin=0.0, dmin=0.0):
    if c < w:
        return warmup(lr0, c, w, wmin)
    s = T - d
    if c < s:
        return lr0
    if c >= T:
        return dmin
    return dmin + (lr0 - dmin) * decay_factor(shape, (c - s) / d)


def olmo_count(fraction: float, length: int) -> int:
    """OLMo-core's count of a fraction: ``round(t_max * fraction)``, Python's round (half to even)."""
    return round(length * fraction)


def wsds(lr0, c, T=None, *, lengths, w, decays, mults=None, shape="linear", wmin=0.0, dmin=0.0):
    # OLMo-core's WSDS: period i is closed on the right (its `_find_period` takes the first end with
    # x <= end), so at E(i) the LR is decay_min_lr and the next peak starts just after E(i).
    mults = mults or [1.0] * len(lengths)
    if c < w:
        return warmup(lr0 * mults[0], c, w, wmin)
    start = 0
    for length, d, m in zip(lengths, decays, mults):
        end = start + length
        if c <= end:
            peak = lr0 * m
            if c < end - d:
                return peak
            return dmin + (peak - dmin) * decay_factor(shape, (c - (end - d)) / d)
        start = end
    return dmin


def power_lr(lr0, c, T, *, w, b, d=0, wmin=0.0, dmin=0.0):
    if c < w:
        return warmup(lr0, c, w, wmin)
    if d and c >= T - d:
        if c >= T:
            return dmin
        top = lr0 * ((T - d) / w) ** b
        return dmin + (top - dmin) * (T - c) / d
    return lr0 * (c / w) ** b


def optax_warmup_cosine_decay(c, *, init_value, peak_value, warmup_steps, decay_steps, end_value=0.0, exponent=1.0):
    """optax.warmup_cosine_decay_schedule(init_value, peak_value, warmup_steps, decay_steps, end_value, exponent).

    optax joins ``linear_schedule(init_value -> peak_value over warmup_steps)`` and, from
    ``warmup_steps`` on, ``cosine_decay_schedule(peak_value, decay_steps - warmup_steps,
    alpha = end_value / peak_value, exponent)`` evaluated at ``c - warmup_steps``:
    ``peak * ((1 - alpha) * (0.5 * (1 + cos(pi * min(t, n) / n))) ** exponent + alpha)``.
    """
    if c < warmup_steps:
        frac = 1 - c / warmup_steps
        return (init_value - peak_value) * frac + peak_value
    n = decay_steps - warmup_steps
    t = min(c - warmup_steps, n)
    alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
    return peak_value * ((1 - alpha) * (0.5 * (1 + math.cos(math.pi * t / n))) ** exponent + alpha)


def _olmo_interpolate(shape, start, end, x, n):
    """OLMo-core's ``_interpolate_lr`` for linear and cosine; sqrt is optreg's addition (1 - sqrt(p))."""
    if shape == "linear":
        return start + (end - start) * x / n
    if shape == "cosine":
        return end + (start - end) * (1 + math.cos(math.pi * x / n)) / 2
    return end + (start - end) * (1 - math.sqrt(x / n))


def composable(lr0, c, T=None, *, stages, override_decay=None):
    """OLMo-core's ComposableScheduler, from the spec's own tables (``stages``, ``override_decay``).

    Stage k covers [S_k, S_k + duration): half open, so a boundary belongs to the next stage. Its
    start LR is start_lr, or start_lr_fraction * lr0, or the previous stage's end LR (lr0 for the
    first); its end LR is end_lr or end_lr_fraction * lr0. After the last stage: its end LR.
    current < 0 counts as 0; T plays no part.
    """
    c = max(c, 0)

    def main(c):
        s, prev = 0, lr0
        for st in stages:
            if "start_lr" in st:
                a = st["start_lr"]
            elif "start_lr_fraction" in st:
                a = lr0 * st["start_lr_fraction"]
            else:
                a = prev
            b = st["end_lr"] if "end_lr" in st else lr0 * st["end_lr_fraction"]
            if c < s + st["duration"]:
                return _olmo_interpolate(st.get("shape", "linear"), a, b, c - s, st["duration"])
            prev, s = b, s + st["duration"]
        return prev

    o = override_decay
    if o is None or c < o["start"]:
        return main(c)
    end = o["end_lr"] if "end_lr" in o else lr0 * o["end_lr_fraction"]
    if c - o["start"] < o["duration"]:
        return _olmo_interpolate(o.get("shape", "linear"), main(o["start"]), end, c - o["start"], o["duration"])
    return end
