"""The package's shape: lazy imports, constructor checks worded as the spec's, the batching policy, load order."""

import copy
import subprocess
import sys

import pytest
import torch
from optreg_muon import Dion, Muon, NorMuon
from optreg_muon.functional import matrix
from torch import nn

import optreg


def test_importing_the_package_imports_no_torch_until_an_optimizer_is_asked_for() -> None:
    code = (
        "import sys, optreg_muon, optreg_muon.functional; before = 'torch' in sys.modules; "
        "optreg_muon.Muon; import optreg_muon.functional.newton_schulz as ns; "
        "print(before, 'torch' in sys.modules, 'triton' in sys.modules, type(ns).__name__, "
        "optreg_muon.resolve_coefficients is ns.resolve_coefficients)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "False", "module", "True"]


def test_unknown_package_attributes_are_attribute_errors() -> None:
    import optreg_muon

    with pytest.raises(AttributeError, match="no attribute 'Muonn'"):
        optreg_muon.Muonn  # noqa: B018


#: (spec table, the same value as a constructor argument): the constructor's check says what the spec says.
BAD = [
    ({"type": "muon", "lr": -1.0}, Muon, {"lr": -1.0}),
    ({"type": "muon", "momentum": 1.0}, Muon, {"momentum": 1.0}),
    ({"type": "muon", "eps": 0.0}, Muon, {"eps": 0.0}),
    ({"type": "muon", "ns_steps": 100}, Muon, {"ns_steps": 100}),
    ({"type": "muon", "num_heads": 0}, Muon, {"num_heads": 0}),
    ({"type": "muon", "split_sizes": [0, 3]}, Muon, {"split_sizes": (0, 3)}),
    ({"type": "muon", "weight_decay": -0.1}, Muon, {"weight_decay": -0.1}),
    ({"type": "muon", "adam_betas": [0.9, 1.0]}, Muon, {"adam_betas": (0.9, 1.0)}),
    ({"type": "muon", "adam_weight_decay": -1.0}, Muon, {"adam_weight_decay": -1.0}),
    ({"type": "normuon", "muon_beta2": 1.0}, NorMuon, {"muon_beta2": 1.0}),
    ({"type": "normuon", "normuon_eps": 0.0}, NorMuon, {"normuon_eps": 0.0}),
    ({"type": "dion", "mu": 1.0}, Dion, {"mu": 1.0}),
    ({"type": "dion", "rank_fraction": 0.0}, Dion, {"rank_fraction": 0.0}),
    ({"type": "dion", "rank_multiple_of": 0}, Dion, {"rank_multiple_of": 0}),
    ({"type": "dion", "power_iters": 0}, Dion, {"power_iters": 0}),
    ({"type": "dion", "seed": -1}, Dion, {"seed": -1}),
]


@pytest.mark.parametrize(("table", "cls", "kwargs"), BAD, ids=[f"{t['type']}-{next(iter(k))}" for t, _, k in BAD])
def test_constructor_checks_say_what_the_spec_says(table: dict, cls: type, kwargs: dict) -> None:
    model = nn.Linear(3, 3)
    with pytest.raises(optreg.SpecError) as spec_error:
        optreg.build_optimizer(table, model)
    path, _, spec_message = str(spec_error.value).partition(": ")  # "$.split_sizes[0]: must be >= 1, got 0"
    with pytest.raises(ValueError) as error:
        cls(model.parameters(), **kwargs)
    message = str(error.value)
    if "betas" in path:  # optreg.optim.check_betas writes its bounds as floats: [0.0, 1.0)
        message = message.replace("[0.0, 1.0)", "[0, 1)")
    assert message == f"{path.removeprefix('$.')} {spec_message}"


def test_foreach_batches_same_shaped_blocks_into_one_newton_schulz_call(monkeypatch) -> None:
    """None (the default) and True batch; False runs one call per block, as torch.optim.Muon."""
    calls: list[tuple[int, ...]] = []
    real = matrix.newton_schulz

    def counting(G, *args, **kwargs):
        calls.append(tuple(G.shape))
        return real(G, *args, **kwargs)

    monkeypatch.setattr(matrix, "newton_schulz", counting)
    for foreach, expected in ((None, [(3, 6, 4), (5, 4)]), (True, [(3, 6, 4), (5, 4)]),
                              (False, [(6, 4), (6, 4), (6, 4), (5, 4)])):
        params = [nn.Parameter(torch.randn(6, 4)) for _ in range(3)] + [nn.Parameter(torch.randn(5, 4))]
        opt = Muon(params, foreach=foreach)
        assert opt.batch_matrices is (foreach is not False)
        for p in params:
            p.grad = torch.randn_like(p)
        calls.clear()
        opt.step()
        assert calls == expected, foreach


def test_normuon_second_moment_is_float32_before_the_users_post_hooks_and_on_every_load() -> None:
    """bf16 params: the restored float32 second moment is what the user's load post-hooks see, load after load."""
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(6, 4, dtype=torch.bfloat16))
    opt = NorMuon([w])
    w.grad = torch.randn(6, 4, dtype=torch.bfloat16)
    opt.step()
    saved = copy.deepcopy(opt.state_dict())
    resumed_w = nn.Parameter(w.detach().clone())
    resumed = NorMuon([resumed_w])
    seen = []
    resumed.register_load_state_dict_post_hook(lambda o: seen.append(o.state[resumed_w]["second_moment"].clone()))
    for _ in range(2):
        resumed.load_state_dict(saved)
    assert [t.dtype for t in seen] == [torch.float32, torch.float32]
    assert all(torch.equal(t, opt.state[w]["second_moment"]) for t in seen)
    assert "_loading" not in resumed.__dict__, "the captured state dict must not outlive the load"
