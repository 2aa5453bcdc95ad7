"""Each optimizer equals torch's class to 0 difference over 20 steps on a small model with fixed seeds.

optreg builds torch's own class with the spec's options, so the same operations run in the same order:
parameters and state must be bit-identical (no tolerance), on every machine. The torch optimizer here is
built directly from hand-written keyword arguments, not from the spec, so a spec that passed an option
under the wrong name, dropped one or changed a default would show. Options are all away from their
defaults, and each multi-tensor path is compared with torch's same path.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import optreg
from optreg.testing import assert_state_equal

# name: (optreg options, torch class, torch keyword arguments written out by hand)
CASES: dict[str, tuple[dict, str, dict]] = {
    "adadelta": ({"lr": 0.5, "rho": 0.8, "eps": 1e-5, "weight_decay": 0.01},
                 "Adadelta", {"lr": 0.5, "rho": 0.8, "eps": 1e-5, "weight_decay": 0.01}),
    "adafactor": ({"lr": 0.02, "beta2_decay": -0.7, "eps1": 1e-20, "eps2": 2e-3, "d": 1.5, "weight_decay": 0.01},
                  "Adafactor", {"lr": 0.02, "beta2_decay": -0.7, "eps": (1e-20, 2e-3), "d": 1.5, "weight_decay": 0.01}),
    "adafactor-default-eps": ({"lr": 0.03}, "Adafactor", {"lr": 0.03}),
    "adagrad": ({"lr": 0.05, "lr_decay": 0.01, "weight_decay": 0.01, "initial_accumulator_value": 0.1, "eps": 1e-9},
                "Adagrad", {"lr": 0.05, "lr_decay": 0.01, "weight_decay": 0.01, "initial_accumulator_value": 0.1,
                            "eps": 1e-9}),
    "adamax": ({"lr": 0.01, "betas": [0.8, 0.99], "eps": 1e-7, "weight_decay": 0.01},
               "Adamax", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-7, "weight_decay": 0.01}),
    "asgd": ({"lr": 0.05, "lambd": 1e-3, "alpha": 0.7, "t0": 5.0, "weight_decay": 0.01},
             "ASGD", {"lr": 0.05, "lambd": 1e-3, "alpha": 0.7, "t0": 5.0, "weight_decay": 0.01}),
    "lbfgs": ({"lr": 0.5, "max_iter": 5, "max_eval": 8, "history_size": 4, "tolerance_grad": 1e-9,
               "tolerance_change": 1e-11},
              "LBFGS", {"lr": 0.5, "max_iter": 5, "max_eval": 8, "history_size": 4, "tolerance_grad": 1e-9,
                        "tolerance_change": 1e-11}),
    "lbfgs-strong_wolfe": ({"line_search_fn": "strong_wolfe", "max_iter": 3}, "LBFGS",
                           {"line_search_fn": "strong_wolfe", "max_iter": 3}),
    "nadam": ({"lr": 0.01, "betas": [0.85, 0.99], "eps": 1e-7, "weight_decay": 0.01, "momentum_decay": 0.005,
               "decoupled_weight_decay": True},
              "NAdam", {"lr": 0.01, "betas": (0.85, 0.99), "eps": 1e-7, "weight_decay": 0.01, "momentum_decay": 0.005,
                        "decoupled_weight_decay": True}),
    "radam": ({"lr": 0.01, "betas": [0.85, 0.99], "eps": 1e-7, "weight_decay": 0.01},
              "RAdam", {"lr": 0.01, "betas": (0.85, 0.99), "eps": 1e-7, "weight_decay": 0.01}),
    "radam-decoupled": ({"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
                        "RAdam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    "rmsprop": ({"lr": 0.01, "alpha": 0.9, "eps": 1e-7, "weight_decay": 0.01, "momentum": 0.5, "centered": True},
                "RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-7, "weight_decay": 0.01, "momentum": 0.5,
                            "centered": True}),
    "rprop": ({"lr": 0.02, "etas": [0.4, 1.3], "step_sizes": [1e-5, 1.0]},
              "Rprop", {"lr": 0.02, "etas": (0.4, 1.3), "step_sizes": (1e-5, 1.0)}),
}
FOREACH = {"adadelta", "adafactor", "adagrad", "adamax", "asgd", "nadam", "radam", "rmsprop", "rprop"}
STEPS = 20


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 6, generator=g), torch.randn(16, 3, generator=g)) for _ in range(STEPS)]


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, *, maximize: bool = False) -> list[float]:
    losses = []
    for x, y in _batches():

        def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            return loss

        losses.append(float(optimizer.step(closure).detach()))
    return losses


def _variants() -> list:
    out = []
    for name in CASES:
        base = name.split("-")[0]
        for foreach in ((None, False, True) if base in FOREACH else (None,)):
            out.append(pytest.param(name, foreach, id=f"{name}-foreach={foreach}"))
    out.append(pytest.param("adagrad", "fused", id="adagrad-fused"))
    return out


@pytest.mark.parametrize(("name", "foreach"), _variants())
def test_equals_the_torch_class_to_zero_difference(name: str, foreach) -> None:
    options, torch_name, torch_kwargs = CASES[name]
    extra: dict = {}
    if foreach == "fused":
        extra = {"fused": True}
    elif foreach is not None:
        extra = {"foreach": foreach}
    ours_model, theirs_model = _model(), _model()
    # no_decay = []: torch's class decays every parameter; optreg's default would exempt the biases
    ours = optreg.build_optimizer({"type": name.split("-")[0], **options, **extra, "no_decay": []}, ours_model)
    theirs = getattr(torch.optim, torch_name)(theirs_model.parameters(), **torch_kwargs, **extra)
    assert type(ours) is type(theirs), "optreg must build torch's own class"
    losses_ours, losses_theirs = _train(ours_model, ours), _train(theirs_model, theirs)
    assert losses_ours == losses_theirs
    assert losses_ours[-1] < losses_ours[0], "the run did not train (a comparison of two frozen models proves nothing)"
    for (n, a), b in zip(ours_model.named_parameters(), theirs_model.parameters()):
        assert torch.equal(a, b), f"{n}: max difference {(a - b).abs().max().item():.3e}"
    assert_state_equal(ours.state_dict()["state"], theirs.state_dict()["state"])
    (group,) = ours.param_groups
    for key, value in theirs.param_groups[0].items():
        if key not in ("params", "param_names"):
            assert group[key] == value, f"param group option {key}: {group[key]!r} != torch's {value!r}"


def test_defaults_build_torch_defaults() -> None:
    """A spec with no options builds the torch class with torch's defaults (every hyperparameter equal)."""
    registry = optreg.get_registry()
    from optreg_torch.specs import OPTIMIZER_SPECS

    for cls in OPTIMIZER_SPECS:
        built = registry.build_optimizer({"type": cls.TYPE}, _model())
        reference = getattr(torch.optim, cls.TORCH_CLASS)(_model().parameters())
        for key, value in reference.defaults.items():
            assert built.defaults[key] == value, f"{cls.TYPE}: {key} = {built.defaults[key]!r}, torch's {value!r}"


def test_adafactor_refuses_complex_params_when_built() -> None:
    z = nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    with pytest.raises(TypeError, match="complex"):
        optreg.build_optimizer({"type": "adafactor"}, [z])
