"""The conformance kit over every schedule of the plugin, in steps and in tokens, and its spec errors."""

from __future__ import annotations

from functools import partial

import schedule_formulas as F

from optreg.testing import ErrorCase, SchedulerCase, SchedulerConformance


def expected(formula, points, T, lr0=1.0):
    return {c: formula(lr0, c, T) for c in points}


def _case(spec, formula, points, *, t_max=100, lr0=1.0, step_tokens=1, run_t_max=True, **kw):
    """A kit case; ``t_max`` goes to the spec when ``run_t_max`` is false, else it comes from the run."""
    if not run_t_max:
        spec = {**spec, "t_max": t_max}
    return SchedulerCase(spec=spec, t_max=t_max if run_t_max else None, initial_lr=lr0,
                         expected=expected(formula, points, t_max, lr0), step_tokens=step_tokens, **kw)


# step 0, inside and at the end of the warmup, start of the decay, t_max, past t_max
P = (0, 5, 9, 10, 11, 50, 79, 80, 81, 99, 100, 120)
TOK = 32  # tokens per step in the tokens cases
PT = tuple(c * TOK for c in P)

# Warmup from 0 (an explicit start), stable, a cosine to a tenth, then a jump to an explicit start and a
# linear decay: every stage rule of OLMo-core's ComposableScheduler.
COMPOSABLE = {"type": "composable", "stages": [
    {"duration": 10, "start_lr": 0.0, "end_lr_fraction": 1.0},
    {"duration": 60, "end_lr_fraction": 1.0},
    {"duration": 10, "shape": "cosine", "end_lr_fraction": 0.1},
    {"duration": 10, "start_lr_fraction": 0.5, "end_lr": 0.0},
]}
COMPOSABLE_TOKENS = {"type": "composable", "units": "tokens", "stages": [
    {"duration": 10 * TOK, "start_lr_fraction": 0.1, "end_lr_fraction": 1.0, "shape": "cosine"},
    {"duration": 70 * TOK, "end_lr_fraction": 0.5, "shape": "sqrt"},
], "override_decay": {"start": 75 * TOK, "duration": 10 * TOK, "end_lr": 0.01}}

CASES = [
    _case({"type": "constant_with_warmup", "warmup_steps": 10}, partial(F.constant_with_warmup, w=10), P),
    _case({"type": "constant_with_warmup", "warmup_steps": 10 * TOK, "units": "tokens", "warmup_min_lr": 0.01},
          partial(F.constant_with_warmup, w=10 * TOK, wmin=0.01), PT, t_max=100 * TOK, step_tokens=TOK),
    _case({"type": "linear_with_warmup", "warmup_fraction": 0.1}, partial(F.linear_with_warmup, w=10), P, lr0=0.3),
    _case({"type": "linear_with_warmup", "warmup_steps": 10 * TOK, "units": "tokens", "alpha_f": 0.0},
          partial(F.linear_with_warmup, w=10 * TOK, alpha=0.0), PT, t_max=100 * TOK, step_tokens=TOK,
          run_t_max=False),
    _case({"type": "cos_with_warmup", "warmup_steps": 10}, partial(F.cos_with_warmup, w=10), P),
    _case({"type": "cos_with_warmup", "warmup_fraction": 0.1, "units": "tokens", "warmup_min_lr": 1e-4},
          partial(F.cos_with_warmup, w=10 * TOK, wmin=1e-4), PT, t_max=100 * TOK, step_tokens=TOK),
    _case({"type": "half_cos_with_warmup", "warmup_steps": 10, "alpha_f": 0.0},
          partial(F.half_cos_with_warmup, w=10, alpha=0.0), P, run_t_max=False),
    _case({"type": "half_cos_with_warmup", "warmup_steps": 10 * TOK, "units": "tokens"},
          partial(F.half_cos_with_warmup, w=10 * TOK), PT, t_max=100 * TOK, step_tokens=TOK),
    _case({"type": "cos_with_warmup_and_linear_decay", "warmup_steps": 10, "decay_steps": 20},
          partial(F.cos_with_warmup_and_linear_decay, w=10, d=20), P),
    _case({"type": "cos_with_warmup_and_linear_decay", "warmup_fraction": 0.1, "decay_fraction": 0.2,
           "units": "tokens", "decay_min_lr": 0.001},
          partial(F.cos_with_warmup_and_linear_decay, w=10 * TOK, d=20 * TOK, dmin=0.001), PT, t_max=100 * TOK,
          step_tokens=TOK),
    _case({"type": "inv_sqrt_with_warmup", "warmup_steps": 10}, partial(F.inv_sqrt_with_warmup, w=10), P),
    _case({"type": "inv_sqrt_with_warmup", "warmup_steps": 10 * TOK, "units": "tokens"},
          partial(F.inv_sqrt_with_warmup, w=10 * TOK), PT, t_max=100 * TOK, step_tokens=TOK),
    _case({"type": "exponential", "lr_min": 1e-5}, partial(F.exponential, lr_min=1e-5), P),
    _case({"type": "exponential", "lr_min": 1e-5, "units": "tokens"}, partial(F.exponential, lr_min=1e-5), PT,
          t_max=100 * TOK, step_tokens=TOK, rel_tol=1e-9),
    _case({"type": "wsd", "warmup_steps": 10, "decay_steps": 20}, partial(F.wsd, w=10, d=20), P),
    _case({"type": "wsd", "warmup_steps": 10, "decay_fraction": 0.2, "decay_shape": "sqrt", "decay_min_lr": 0.01},
          partial(F.wsd, w=10, d=20, shape="sqrt", dmin=0.01), P, run_t_max=False),
    _case({"type": "wsd", "warmup_fraction": 0.1, "decay_fraction": 0.2, "decay_shape": "cosine", "units": "tokens"},
          partial(F.wsd, w=10 * TOK, d=20 * TOK, shape="cosine"), PT, t_max=100 * TOK, step_tokens=TOK),
    _case({"type": "wsds", "period_lengths": [60, 40], "warmup_steps": 10, "decay_fraction": 0.25,
           "period_lr_multipliers": [1.0, 0.5]},
          partial(F.wsds, lengths=[60, 40], w=10, decays=[15, 10], mults=[1.0, 0.5]),
          (0, 5, 10, 44, 45, 50, 59, 60, 89, 90, 95, 99, 100, 120)),
    _case({"type": "wsds", "period_lengths": [60 * TOK, 40 * TOK], "warmup_fraction": 0.1, "decay_steps": 10 * TOK,
           "units": "tokens", "decay_shape": "sqrt"},
          partial(F.wsds, lengths=[60 * TOK, 40 * TOK], w=6 * TOK, decays=[10 * TOK, 10 * TOK], shape="sqrt"),
          tuple(c * TOK for c in (0, 3, 6, 49, 50, 55, 60, 89, 90, 95, 100, 120))),
    _case({"type": "power_lr", "warmup_steps": 10, "b": -0.5}, partial(F.power_lr, w=10, b=-0.5), P),
    _case({"type": "power_lr", "warmup_steps": 10 * TOK, "decay_fraction": 0.2, "units": "tokens"},
          partial(F.power_lr, w=10 * TOK, b=-0.51, d=20 * TOK), PT, t_max=100 * TOK, step_tokens=TOK),
    # At the boundary (50) the finishing cosine's last LR, as OLMo-core; the warmup of the next starts after it.
    _case({"type": "sequential", "durations": [50],
           "schedules": [{"type": "cos_with_warmup", "warmup_steps": 10}, {"type": "constant_with_warmup",
                                                                              "warmup_steps": 10}]},
          lambda lr0, c, T: (F.cos_with_warmup(lr0, c, 50, w=10) if c <= 50
                             else F.constant_with_warmup(F.cos_with_warmup(lr0, 50, 50, w=10), c - 50, T - 50, w=10)),
          P),
    _case({"type": "sequential", "units": "tokens", "durations": [50 * TOK],
           "schedules": [{"type": "constant_with_warmup", "warmup_steps": 10 * TOK, "units": "tokens"},
                         {"type": "linear_with_warmup", "warmup_steps": 0, "alpha_f": 0.0, "units": "tokens"}],
           "override_decay": {"start": 80 * TOK, "duration": 10 * TOK, "end_lr": 0.0}},
          lambda lr0, c, T: (F.constant_with_warmup(lr0, c, T, w=10 * TOK) if c < 50 * TOK
                             else F.linear_with_warmup(lr0, min(c, 80 * TOK) - 50 * TOK, 50 * TOK, w=0, alpha=0.0)
                             * (1 - min((c - 80 * TOK) / (10 * TOK), 1.0) if c >= 80 * TOK else 1.0)),
          PT, t_max=100 * TOK, step_tokens=TOK),
    _case(COMPOSABLE, partial(F.composable, stages=COMPOSABLE["stages"]), (0, 5, 10, 11, 50, 69, 70, 79, 80, 90, 99,
                                                                          100, 120)),
    _case(COMPOSABLE_TOKENS, partial(F.composable, stages=COMPOSABLE_TOKENS["stages"],
                                     override_decay=COMPOSABLE_TOKENS["override_decay"]),
          PT + (70 * TOK, 85 * TOK), t_max=100 * TOK, step_tokens=TOK, lr0=0.3),
    _case({"type": "warmup_cosine_decay", "warmup_steps": 10, "decay_steps": 90, "init_value": 0.01},
          lambda lr0, c, T: F.optax_warmup_cosine_decay(c, init_value=0.01, peak_value=lr0, warmup_steps=10,
                                                        decay_steps=90), P),
    _case({"type": "warmup_cosine_decay", "warmup_steps": 10 * TOK, "units": "tokens", "end_value": 0.05},
          lambda lr0, c, T: F.optax_warmup_cosine_decay(c, init_value=0.0, peak_value=lr0, warmup_steps=10 * TOK,
                                                        decay_steps=T, end_value=0.05),
          PT, t_max=100 * TOK, step_tokens=TOK),
]

W = {"type": "wsd", "warmup_steps": 10, "decay_steps": 20}
C = {"type": "composable", "stages": [{"duration": 10, "end_lr": 0.0}]}


def _stage(**fields):
    return {**C, "stages": [{"duration": 5, "end_lr_fraction": 1.0}, fields]}


ERRORS = [
    # negative counts
    ErrorCase(spec={"type": "cos_with_warmup", "warmup_steps": -1}, path="$.warmup_steps", match=r"must be in \[0, "),
    ErrorCase(spec={**W, "decay_steps": -5}, path="$.decay_steps", match=r"must be in \[0, "),
    ErrorCase(spec={"type": "wsds", "period_lengths": [10, 0], "warmup_steps": 1, "decay_steps": 1},
              path="$.period_lengths[1]", match=r"must be in \[1, "),
    ErrorCase(spec={**W, "t_max": 0}, path="$.t_max", match=r"must be in \[1, "),
    # fractions outside [0, 1]
    ErrorCase(spec={"type": "linear_with_warmup", "warmup_fraction": 1.5}, path="$.warmup_fraction",
              match=r"in \[0, 1\]"),
    ErrorCase(spec={"type": "wsd", "warmup_steps": 0, "decay_fraction": -0.1}, path="$.decay_fraction",
              match=r"in \[0, 1\]"),
    ErrorCase(spec={"type": "cos_with_warmup", "warmup_steps": 1, "alpha_f": 2.0}, path="$.alpha_f",
              match=r"in \[0, 1\]"),
    ErrorCase(spec={"type": "sequential", "schedules": [{"type": "constant"}],
                    "override_decay": {"start": 1, "duration": 1, "end_lr_fraction": 1.5}},
              path="$.override_decay.end_lr_fraction", match=r"in \[0, 1\]"),
    # warmup longer than t_max (t_max in the spec; from the run: see test_errors.py)
    ErrorCase(spec={"type": "cos_with_warmup", "warmup_steps": 200, "t_max": 100}, path="$.warmup_steps",
              match=r"warmup \(200\) is longer than t_max \(100\)"),
    ErrorCase(spec={**W, "t_max": 25}, path="$.decay_steps", match=r"warmup \(10\) \+ decay \(20\) = 30 is longer"),
    ErrorCase(spec={"type": "wsd", "warmup_fraction": 0.5, "decay_fraction": 0.6}, path="$.decay_fraction",
              match="above 1"),
    ErrorCase(spec={"type": "wsds", "period_lengths": [20, 10], "warmup_steps": 15, "decay_steps": 8},
              path="$.decay_steps", match=r"warmup \(15\) \+ decay \(8\) is longer than period 0"),
    ErrorCase(spec={"type": "wsds", "period_lengths": [20, 10], "warmup_steps": 1, "decay_steps": 1, "t_max": 40},
              path="$.period_lengths", match="the periods cover 30 steps but t_max is 40"),
    # wsds: the LR at the end of a period is decay_min_lr, so every period needs a decay
    ErrorCase(spec={"type": "wsds", "period_lengths": [20, 10], "warmup_steps": 1, "decay_steps": 0},
              path="$.decay_steps", match="decay_steps = 0: every wsds period needs a decay > 0"),
    ErrorCase(spec={"type": "wsds", "period_lengths": [20, 4], "warmup_steps": 1, "decay_fraction": 0.1},
              path="$.decay_fraction", match=r"decay_fraction = 0.1 of period 1 \(4\) rounds to 0"),
    ErrorCase(spec={"type": "warmup_cosine_decay", "warmup_steps": 100, "decay_steps": 100}, path="$.decay_steps",
              match="larger than warmup_steps"),
    # both absolute and fraction, or neither
    ErrorCase(spec={"type": "cos_with_warmup", "warmup_steps": 10, "warmup_fraction": 0.1},
              path="$.warmup_fraction", match="not both"),
    ErrorCase(spec={**W, "decay_fraction": 0.1}, path="$.decay_fraction", match="not both"),
    ErrorCase(spec={"type": "cos_with_warmup"}, path="$.warmup_steps", match="required: give the warmup"),
    ErrorCase(spec={"type": "wsd", "warmup_steps": 5}, path="$.decay_steps", match="required: give the decay"),
    ErrorCase(spec={"type": "sequential", "schedules": [{"type": "constant"}],
                    "override_decay": {"start": 1, "duration": 1, "end_lr": 0.0, "end_lr_fraction": 0.0}},
              path="$.override_decay.end_lr_fraction", match="not both"),
    # power_lr needs b < 0 and a warmup
    ErrorCase(spec={"type": "power_lr", "warmup_steps": 10, "b": 0.0}, path="$.b", match="must be < 0"),
    ErrorCase(spec={"type": "power_lr", "warmup_steps": 10, "b": 0.5}, path="$.b", match="must be < 0"),
    ErrorCase(spec={"type": "power_lr", "warmup_steps": 0}, path="$.warmup_steps", match="needs a warmup > 0"),
    ErrorCase(spec={"type": "inv_sqrt_with_warmup", "warmup_fraction": 0.0}, path="$.warmup_fraction",
              match="needs a warmup > 0"),
    # the rest of the options
    ErrorCase(spec={"type": "exponential", "lr_min": 0.0}, path="$.lr_min", match="must be > 0"),
    ErrorCase(spec={**W, "decay_shape": "cubic"}, path="$.decay_shape", match="one of 'linear', 'cosine', 'sqrt'"),
    ErrorCase(spec={**W, "units": "epochs"}, path="$.units", match="one of 'steps', 'tokens'"),
    ErrorCase(spec={"type": "wsds", "period_lengths": [10, 10], "period_lr_multipliers": [1.0], "warmup_steps": 1,
                    "decay_steps": 1}, path="$.period_lr_multipliers", match="one multiplier per period"),
    ErrorCase(spec={"type": "sequential", "schedules": [{"type": "constant"}, {"type": "constant"}]},
              path="$.durations", match="a duration for every schedule but the last"),
    ErrorCase(spec={"type": "sequential", "durations": [10],
                    "schedules": [{"type": "constant"}, {"type": "cos_with_warmup", "warmup_steps": -3}]},
              path="$.schedules[1].warmup_steps", match=r"must be in \[0, "),
    ErrorCase(spec={"type": "sequential", "durations": [10],
                    "schedules": [{"type": "constant"}, {"type": "no_such_schedule"}]},
              path="$.schedules[1].type", match="registered"),
    ErrorCase(spec={"type": "sequential", "durations": [10], "units": "tokens",
                    "schedules": [{"type": "constant", "units": "tokens"}, {"type": "constant"}]},
              path="$.schedules[1]", match="differs from the sequence's units"),
    ErrorCase(spec={"type": "sequential", "durations": [10],
                    "schedules": [{"type": "cos_with_warmup", "warmup_steps": 20}, {"type": "constant"}]},
              path="$.schedules[0]", match=r"warmup_steps: the warmup \(20\) is longer than t_max \(10\)"),
]


# composable: every stage and override error at its path
ERRORS += [
    ErrorCase(spec={**C, "stages": []}, path="$.stages", match="give at least one stage"),
    ErrorCase(spec={**C, "stages": {"duration": 10, "end_lr": 0.0}}, path="$.stages", match="expected an array"),
    ErrorCase(spec=_stage(end_lr=0.0), path="$.stages[1].duration", match="required key is missing"),
    ErrorCase(spec=_stage(duration=0, end_lr=0.0), path="$.stages[1].duration", match=r"must be in \[1, "),
    ErrorCase(spec=_stage(duration=2.5, end_lr=0.0), path="$.stages[1].duration", match="expected an integer"),
    ErrorCase(spec=_stage(duration=5), path="$.stages[1].end_lr", match="required: give the stage's end LR"),
    ErrorCase(spec=_stage(duration=5, end_lr=0.0, end_lr_fraction=0.0), path="$.stages[1].end_lr_fraction",
              match="not both"),
    ErrorCase(spec=_stage(duration=5, end_lr=0.0, start_lr=1.0, start_lr_fraction=0.5),
              path="$.stages[1].start_lr_fraction", match="not both"),
    ErrorCase(spec=_stage(duration=5, end_lr=-1e-3), path="$.stages[1].end_lr", match="must be >= 0"),
    ErrorCase(spec=_stage(duration=5, end_lr_fraction=0.1, start_lr_fraction=-0.5),
              path="$.stages[1].start_lr_fraction", match="must be >= 0"),
    ErrorCase(spec=_stage(duration=5, end_lr=0.0, shape="cubic"), path="$.stages[1].shape",
              match="one of 'linear', 'cosine', 'sqrt'"),
    ErrorCase(spec=_stage(durration=5, end_lr=0.0), path="$.stages[1].durration", match="did you mean 'duration'"),
    ErrorCase(spec={**C, "override_decay": {"start": 5, "duration": 0, "end_lr": 0.0}},
              path="$.override_decay.duration", match=r"must be in \[1, "),
    ErrorCase(spec={**C, "override_decay": {"start": 5, "duration": 5}}, path="$.override_decay.end_lr",
              match="required: give the final LR"),
]


class TestSchedules(SchedulerConformance):
    distribution = "optreg-schedules"
    cases = CASES
    error_cases = ERRORS


def test_every_registered_name_has_kit_cases_in_both_units(optreg_registry) -> None:
    provided = {n for n in optreg_registry.names("scheduler")
                if optreg_registry.provider("scheduler", n).distribution == "optreg-schedules"}
    assert len(provided) == 13
    for units in ("steps", "tokens"):
        covered = {c.spec["type"] for c in CASES if c.spec.get("units", "steps") == units}
        assert covered == provided, f"{units}: missing {sorted(provided - covered)}"
