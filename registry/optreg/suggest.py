"""Did-you-mean suggestions for names and keys, tuned to what people type.

Beyond close spellings (difflib), a name matches case- and separator-insensitively
(``AdamW`` -> ``adamw``, ``schedule-free-adamw`` -> ``schedule_free_adamw``), and the names
other libraries use map to ours (``cosine`` -> ``cos_with_warmup``, ``learning_rate`` -> ``lr``).
A suggestion is only made for a name that exists where it is offered.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["COMMON_KEYS", "COMMON_NAMES", "did_you_mean", "normalize", "suggestions"]

#: Names people type for a registered name (from torch, transformers, optax, papers), by kind; each maps to
#: candidates, the registered ones of which are suggested in this order.
COMMON_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "optimizer": {
        "adam_w": ("adamw",),
        "sgd_momentum": ("sgd",),
        "sgd_nesterov": ("sgd",),
        "nesterov": ("sgd",),
        "momentum": ("sgd",),
        "schedulefree": ("schedule_free_adamw",),
        "schedule_free_adam": ("schedule_free_adamw",),
        "sf_adamw": ("schedule_free_adamw",),
        "dadaptation": ("dadapt_adamw",),
        "dadapt_adam": ("dadapt_adamw",),
        "d_adaptation": ("dadapt_adamw",),
        "prodigyopt": ("prodigy",),
        "sign_sgd": ("signsgd",),
        "normuon": ("normuon",),
    },
    "scheduler": {
        "cosine": ("cos_with_warmup", "warmup_cosine_decay"),
        "cos": ("cos_with_warmup", "warmup_cosine_decay"),
        "cosine_annealing": ("cos_with_warmup", "warmup_cosine_decay"),
        "cosine_annealing_lr": ("cos_with_warmup", "warmup_cosine_decay"),
        "cosineannealinglr": ("cos_with_warmup", "warmup_cosine_decay"),
        "cosine_with_warmup": ("cos_with_warmup",),
        "cosine_warmup": ("cos_with_warmup",),
        "warmup_cosine": ("warmup_cosine_decay", "cos_with_warmup"),
        "one_cycle": ("cos_with_warmup",),
        "onecyclelr": ("cos_with_warmup",),
        "linear": ("linear_with_warmup",),
        "linearlr": ("linear_with_warmup",),
        "linear_warmup": ("linear_with_warmup", "constant_with_warmup"),
        "linear_decay": ("linear_with_warmup",),
        "warmup": ("constant_with_warmup",),
        "constant_lr": ("constant",),
        "constantlr": ("constant",),
        "none": ("constant",),
        "exp": ("exponential",),
        "exponentiallr": ("exponential",),
        "exponential_decay": ("exponential",),
        "inverse_sqrt": ("inv_sqrt_with_warmup",),
        "rsqrt": ("inv_sqrt_with_warmup",),
        "warmup_stable_decay": ("wsd",),
        "trapezoidal": ("wsd",),
        "polynomial": ("power_lr",),
        "sequentiallr": ("sequential",),
    },
    "parallelism": {
        "none": ("single",),
        "single_process": ("single",),
        "local": ("single",),
        "distributed_data_parallel": ("ddp",),
        "data_parallel": ("ddp",),
        "fsdp2": ("fsdp",),
        "fully_shard": ("fsdp",),
        "zero3": ("fsdp",),
        "tensor_parallel": ("tp",),
    },
}

#: Option names people type for ours (a suggestion only where the key exists).
COMMON_KEYS: dict[str, tuple[str, ...]] = {
    "learning_rate": ("lr",),
    "learningrate": ("lr",),
    "base_lr": ("lr",),
    "max_lr": ("lr",),
    "peak_lr": ("lr",),
    "wd": ("weight_decay",),
    "decay": ("weight_decay",),
    "beta1": ("betas",),
    "beta2": ("betas",),
    "beta_1": ("betas",),
    "beta_2": ("betas",),
    "b1": ("betas",),
    "b2": ("betas",),
    "epsilon": ("eps",),
    "warmup": ("warmup_steps",),
    "warmup_iters": ("warmup_steps",),
    "num_warmup_steps": ("warmup_steps",),
    "warmup_ratio": ("warmup_fraction", "warmup_steps"),
    "total_steps": ("t_max", "steps"),
    "max_steps": ("t_max", "steps"),
    "num_training_steps": ("t_max", "steps"),
    "num_steps": ("steps", "t_max"),
    "iterations": ("steps",),
    "batch": ("batch_size",),
    "bs": ("batch_size",),
    "clip_grad_norm": ("grad_clip",),
    "max_grad_norm": ("grad_clip",),
    "gradient_clipping": ("grad_clip",),
}


def normalize(name: str) -> str:
    """Lower case, with runs of ``-``, spaces and dots as one ``_``: how names are compared."""
    return re.sub(r"[-\s.]+", "_", name.strip()).lower()


def suggestions(
    word: str, choices: Iterable[str], common: Mapping[str, Sequence[str]] | None = None, *, fuzzy: bool = True
) -> list[str]:
    """The choices ``word`` probably meant, best first (at most two): an exact match up to case and
    separators, then ``common`` names, then (``fuzzy``) close spellings."""
    options = list(dict.fromkeys(choices))
    if not options:
        return []
    norm = normalize(word)
    by_norm = {normalize(c): c for c in options}
    if norm in by_norm and by_norm[norm] != word:
        return [by_norm[norm]]
    squashed = {normalize(c).replace("_", ""): c for c in options}
    if norm.replace("_", "") in squashed and squashed[norm.replace("_", "")] != word:
        return [squashed[norm.replace("_", "")]]
    if common:
        known = set(options)
        mapped = [c for c in common.get(norm, common.get(norm.replace("_", ""), ())) if c in known]
        if mapped:
            return mapped[:2]
    if not fuzzy:
        return []
    close = difflib.get_close_matches(norm, list(by_norm), n=1, cutoff=0.6)
    return [by_norm[close[0]]] if close else []


def did_you_mean(word: str, choices: Iterable[str], common: Mapping[str, Sequence[str]] | None = None) -> str:
    """`` (did you mean 'x'?)`` (or ``'x' or 'y'``) when a likely match exists, else ``""``."""
    found = suggestions(word, choices, common)
    if not found:
        return ""
    return " (did you mean " + " or ".join(repr(f) for f in found) + "?)"
