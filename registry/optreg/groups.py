"""Param groups and parameter roles.

From an ``nn.Module`` every trainable parameter gets a role (``embedding``,
``head``, ``matrix``, ``vector``) from its module's type and its FQN, plus tags
(``bias``, ``norm``). Groups then come from, in order of precedence:

1. the optimizer's role routing (``OptimizerSpec.role_options``), e.g. Muon
   sends ``matrix`` params to its orthogonal update and the rest to AdamW;
2. ``[[optimizer.group_overrides]]`` (fnmatch globs on FQNs, strict by default;
   a parameter matched by several overrides gets them all, later ones win);
3. the no-weight-decay rule (``no_decay``: biases, norms and embeddings by
   default), which wins over everything: those parameters get
   ``weight_decay = 0`` wherever decay would otherwise apply.

Every trainable parameter lands in exactly one group. Frozen parameters
(``requires_grad = False``) of a module are left out.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from optreg.errors import SpecError, format_path

if TYPE_CHECKING:
    from typing import Protocol

    from torch import nn

    class OptimizerSpec(Protocol):
        """What grouping reads of an optimizer spec (``optreg.OptimizerSpec`` has it; no import: specs imports us)."""

        group_overrides: Any
        no_decay: Any
        roles: Any

        def group_option_spec(self) -> Any: ...
        def role_options(self, role: str) -> dict[str, Any] | None: ...

__all__ = ["ParamInfo", "ParamNamesWarning", "build_param_groups", "classify_parameters", "plan_groups", "HEAD_NAMES"]

#: Last FQN segments of a module that is the output head.
HEAD_NAMES = frozenset({"lm_head", "head", "output", "classifier", "score", "fc_out", "output_layer"})
#: FQN segments that mark an embedding table even in a custom module.
EMBEDDING_NAMES = frozenset(
    {"wte", "wpe", "tok_embeddings", "embed_tokens", "embeddings", "embedding", "pos_emb", "tok_emb"}
)
#: FQN segments of normalisation layers in models that write their own norm classes.
NORM_NAMES = frozenset({"ln_f", "ln_1", "ln_2", "norm", "ln", "layernorm", "final_norm", "norm_f"})


@attrs.frozen
class ParamInfo:
    """Where a parameter comes from and how optreg classifies it."""

    fqn: str
    param: Any = attrs.field(repr=False, eq=False)
    role: str
    tags: frozenset[str] = frozenset()
    module_type: str = ""


def _norm_types() -> tuple[type, ...]:
    from torch import nn

    types: list[type] = [nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm]
    if hasattr(nn, "RMSNorm"):
        types.append(nn.RMSNorm)
    return tuple(types)


def clean_fqn(fqn: str) -> str:
    """Drop wrapper prefixes (DDP's ``module.``, ``torch.compile``'s ``_orig_mod.``, FSDP1's, checkpointing's)."""
    parts = [
        p
        for p in fqn.split(".")
        if p not in ("_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module")
    ]
    if parts and parts[0] == "module" and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts)


def _match_any(fqn: str, globs: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(fqn, g) for g in globs)


def classify_parameters(model: nn.Module, explicit_roles: Mapping[str, Iterable[str]] | None = None) -> list[ParamInfo]:
    """Every trainable parameter of ``model`` with its FQN, role and tags, in ``named_parameters`` order."""
    from torch import nn

    norm_types = _norm_types()
    explicit_roles = explicit_roles or {}
    seen: set[int] = set()
    out: list[ParamInfo] = []
    for module_name, module in model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if not param.requires_grad:
                continue
            fqn = clean_fqn(f"{module_name}.{pname}" if module_name else pname)
            segments = fqn.split(".")
            module_segments = clean_fqn(module_name).split(".") if module_name else []
            last_module = module_segments[-1].lower() if module_segments else ""
            tags: set[str] = set()
            if pname == "bias" or pname.endswith("_bias"):
                tags.add("bias")
            if isinstance(module, norm_types) or "norm" in type(module).__name__.lower() or (
                param.ndim <= 1 and any(s.lower() in NORM_NAMES for s in module_segments)
            ):
                tags.add("norm")
            role = next((r for r, globs in explicit_roles.items() if _match_any(fqn, globs)), None)
            if role is None:
                if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) or (
                    param.ndim >= 2 and any(s.lower() in EMBEDDING_NAMES for s in segments)
                ):
                    role = "embedding"
                elif last_module in HEAD_NAMES:
                    role = "head"
                elif param.ndim >= 2 and "norm" not in tags:
                    role = "matrix"
                else:
                    role = "vector"
            out.append(ParamInfo(fqn, param, role, frozenset(tags), type(module).__name__))
    return out


def _infos_from_params(
    params: Iterable[Any], explicit_roles: Mapping[str, Iterable[str]] | None = None
) -> tuple[list[ParamInfo], bool]:
    """ParamInfos from tensors or ``(name, tensor)`` pairs; the flag says whether names were given.

    Without a module only names and shapes are known. A named tensor gets its role and tags from its
    FQN as in :func:`classify_parameters` (``tok_emb.weight`` is an embedding, ``lm_head.weight`` the
    head, ``*.bias`` a bias); a 1-D tensor that is not a bias counts as a norm weight (what a 1-D weight
    almost always is). An unnamed tensor has its shape only: 1-D counts as both a bias and a norm
    weight (``no_decay`` with either leaves it undecayed), 2-D and up as a matrix.
    """
    explicit_roles = explicit_roles or {}
    out: list[ParamInfo] = []
    named = False
    for i, item in enumerate(params):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, tensor = item
            named = True
        else:
            name, tensor = None, item
        if not hasattr(tensor, "ndim"):
            raise TypeError(f"optimizer params must be tensors, (name, tensor) pairs or param-group dicts; "
                            f"item {i} is a {type(tensor).__name__}")
        if name is None:
            tags = frozenset({"bias", "norm"}) if tensor.ndim <= 1 else frozenset()
            out.append(ParamInfo(str(i), tensor, "matrix" if tensor.ndim >= 2 else "vector", tags, ""))
            continue
        fqn = clean_fqn(name)
        segments = fqn.split(".")
        module_segments = [s.lower() for s in segments[:-1]]
        tag_set: set[str] = set()
        if segments[-1] == "bias" or segments[-1].endswith("_bias"):
            tag_set.add("bias")
        elif tensor.ndim <= 1 or any(s in NORM_NAMES for s in module_segments):
            tag_set.add("norm")
        role = next((r for r, globs in explicit_roles.items() if _match_any(fqn, globs)), None)
        if role is None:
            if tensor.ndim >= 2 and any(s.lower() in EMBEDDING_NAMES for s in segments):
                role = "embedding"
            elif module_segments and module_segments[-1] in HEAD_NAMES:
                role = "head"
            elif tensor.ndim >= 2 and "norm" not in tag_set:
                role = "matrix"
            else:
                role = "vector"
        out.append(ParamInfo(fqn, tensor, role, frozenset(tag_set), ""))
    return out, named


class ParamNamesWarning(UserWarning):
    """``no_decay`` was set to list embeddings or the head, which need parameter names, but the parameters came
    as plain tensors (``model.parameters()``). Pass the module or ``named_parameters()``."""


def _warn_unnamed(spec: OptimizerSpec, infos: list[ParamInfo], decays: bool) -> None:
    """Warn when ``no_decay`` was set to list roles plain tensors cannot show (the default stays quiet: with
    ``model.parameters()`` a torch user gets torch's rule for matrices, and the docs say so)."""
    default = attrs.fields_dict(type(spec))["no_decay"].default
    by_name = sorted({"embedding", "head"} & set(spec.no_decay))
    if not decays or not by_name or tuple(spec.no_decay) == tuple(default):
        return
    if not any(i.param.ndim >= 2 for i in infos):
        return
    import warnings

    warnings.warn(
        f"no_decay lists {' and '.join(repr(c) for c in by_name)}, but the parameters came without names "
        "(model.parameters()), so those matrices cannot be told from the others and get weight decay; pass the "
        "module itself or model.named_parameters() (1-D tensors, biases and norm weights, are recognised by "
        "shape and get none)",
        ParamNamesWarning,
        stacklevel=_caller_level(),
    )


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside optreg: the warning points at the user's call."""
    import os
    import sys

    package = os.path.dirname(__file__)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


@attrs.frozen
class PlannedGroup:
    """A param group before it becomes a dict: its members and its options."""

    name: str
    members: tuple[ParamInfo, ...]
    options: Mapping[str, Any]
    named: bool = True


def plan_groups(spec: OptimizerSpec, model_or_params: Any) -> list[PlannedGroup]:
    """Decide the param groups (members and options) without building the optimizer."""
    import torch
    from torch import nn

    has_decay = any(f.name == "weight_decay" for f in attrs.fields(type(spec.group_option_spec())))
    if isinstance(model_or_params, nn.Module):
        infos = classify_parameters(model_or_params, spec.roles)
        named = True
    else:
        if isinstance(model_or_params, torch.Tensor):
            model_or_params = [model_or_params]
        items = list(model_or_params)
        if items and all(isinstance(g, Mapping) for g in items):
            return _plan_from_dict_groups(spec, items)
        infos, named = _infos_from_params(items, spec.roles)
    for option in ("group_overrides", "roles"):
        if getattr(spec, option) and not named:
            raise SpecError(
                f"{option} need parameter names (they match globs over them), but the parameters came as plain "
                "tensors (model.parameters()); pass the module itself or model.named_parameters()",
                path=f"$.{option}",
            )
    _check_globs(spec, infos)
    routes = spec.role_options("matrix") is not None
    target = spec.group_option_spec()
    base_decay = getattr(target, "weight_decay", 0.0) if has_decay else 0.0
    if not named:
        _warn_unnamed(spec, infos, has_decay and base_decay != 0)
    buckets: dict[tuple, list[ParamInfo]] = {}
    options_of: dict[tuple, dict[str, Any]] = {}
    for info in infos:
        matched = tuple(i for i, o in enumerate(spec.group_overrides) if _match_any(info.fqn, o.params))
        options: dict[str, Any] = dict(spec.role_options(info.role) or {}) if routes else {}
        for i in matched:
            options.update(spec.group_overrides[i].options)
        decays = options.get("weight_decay", base_decay) != 0
        no_decay = has_decay and decays and bool(({info.role} | info.tags) & set(spec.no_decay))
        if no_decay:
            options["weight_decay"] = 0.0
        key = (matched, no_decay, info.role if routes else None)
        buckets.setdefault(key, []).append(info)
        options_of.setdefault(key, options)
    planned = []
    for key, members in buckets.items():
        matched, no_decay, role = key
        parts = [role] if role else []
        parts += [f"override{list(matched)}"] if matched else []
        parts += ["no_decay"] if no_decay else []
        planned.append(PlannedGroup("/".join(parts) or "default", tuple(members), options_of[key], named))
    return planned


def _plan_from_dict_groups(spec: OptimizerSpec, groups: list[Mapping[str, Any]]) -> list[PlannedGroup]:
    if spec.group_overrides:
        raise SpecError(
            "group_overrides cannot be combined with ready-made param-group dicts; put the options in the dicts",
            path="$.group_overrides",
        )
    planned = []
    routes = spec.role_options("matrix") is not None
    for gi, group in enumerate(groups):
        params = group["params"]
        infos, _ = _infos_from_params([params] if hasattr(params, "ndim") else params, spec.roles)
        options = {k: v for k, v in group.items() if k != "params"}
        if routes and "role" in options:
            options = {**(spec.role_options(options["role"]) or {}), **options}
            planned.append(PlannedGroup(f"group{gi}", tuple(infos), options, named=False))
        elif routes:
            for role in ("matrix", "vector"):
                members = tuple(i for i in infos if i.role == role)
                if members:
                    role_opts = {**(spec.role_options(role) or {}), **options}
                    planned.append(PlannedGroup(f"group{gi}/{role}", members, role_opts, named=False))
        else:
            planned.append(PlannedGroup(f"group{gi}", tuple(infos), options, named=False))
    return planned


def _check_globs(spec: OptimizerSpec, infos: list[ParamInfo]) -> None:
    errors = []
    names = [i.fqn for i in infos]
    for oi, override in enumerate(spec.group_overrides):
        if not override.strict:
            continue
        for gi, glob in enumerate(override.params):
            if not any(fnmatch.fnmatchcase(n, glob) for n in names):
                sample = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
                errors.append(
                    (
                        format_path(("group_overrides", oi, "params", gi)),
                        f"glob {glob!r} matches no trainable parameter (names look like: {sample}); "
                        "fix the glob or set strict = false in this override",
                    )
                )
    if errors:
        raise SpecError(errors[0][1], path=errors[0][0], errors=errors)


def build_param_groups(spec: OptimizerSpec, model_or_params: Any) -> list[dict[str, Any]]:
    """Param-group dicts ready for ``torch.optim.Optimizer``: named params, options, a ``group_name``."""
    groups = []
    for planned in plan_groups(spec, model_or_params):
        members = planned.members
        params: list[Any] = [(m.fqn, m.param) for m in members] if planned.named else [m.param for m in members]
        groups.append({"params": params, **planned.options, "group_name": planned.name})
    if not groups:
        raise SpecError("no trainable parameters to optimize", path="$")
    return groups

