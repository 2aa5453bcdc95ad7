"""The base of Muon, NorMuon and Dion: routing by parameter kind, argument checks, the non-matrix branch.

Each param group has an ``algorithm``: the optimizer's matrix update (``"muon"``, ``"normuon"``,
``"dion"``) or ``"adamw"`` / ``"lion"`` for non-matrix parameters. Groups built by an optreg spec
already carry it (the core routes by parameter role: embeddings, the output head, biases and norms
go to AdamW). Groups passed directly without one, in the constructor or in ``add_param_group``, are
split: tensors with ``ndim >= 2`` take the matrix update, the rest ``non_matrix_algorithm`` (AdamW or
Lion) with ``adam_lr``, ``adam_betas``, ``adam_eps`` and ``adam_weight_decay`` (options the group
sets win). A group that names an ``algorithm`` is kept as given; a non-matrix one takes those
``adam_*`` values for the options it leaves out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from optreg.optim import OptregOptimizer, check_betas, check_number, params_with_grads, refuse_complex
from optreg.parallel import ROLES
from optreg.specs import FieldValueError
from optreg_muon.functional import _non_matrix

__all__ = ["COMPLEX_REASON", "Orthogonal"]

#: Why complex parameters are refused (at construction, by ``add_param_group`` and at step).
COMPLEX_REASON = (
    "its orthogonalized update is defined for real matrices: the polar factor of a complex matrix is not that "
    "of its real view; keep the real and imaginary parts as real parameters"
)


def _tensor_of(item: Any) -> torch.Tensor:
    return item[1] if isinstance(item, tuple) else item


def _route(group: dict[str, Any], matrix_algorithm: str, non_matrix: dict[str, Any]) -> list[dict[str, Any]]:
    """One param group as the groups the optimizer holds, each with an ``algorithm``.

    A group without one is split by ``ndim``: matrices (``ndim >= 2``) take ``matrix_algorithm``,
    the rest ``non_matrix`` (the ``adam_*`` options and ``non_matrix_algorithm``); options the group
    sets win. A group that names its ``algorithm`` is kept; a non-matrix one gets the ``non_matrix``
    options it leaves out. Members may be tensors or ``(name, tensor)`` pairs.
    """
    members = group["params"]
    if isinstance(members, torch.Tensor):
        members = [members]
    elif isinstance(members, set):
        raise TypeError("param group params must be an ordered collection (a list), not a set: the order of a set "
                        "changes between runs")
    else:
        members = list(members)
    options = {k: v for k, v in group.items() if k != "params"}
    names = options.pop("param_names", None)
    if names is not None:  # names given beside plain tensors: keep each with its tensor through the split
        names = list(names)
        if len(names) != len(members):
            raise ValueError(f"param_names has {len(names)} names for {len(members)} params")
        members = [(n, _tensor_of(m)) for n, m in zip(names, members)]
    for m in members:
        if not isinstance(_tensor_of(m), torch.Tensor):
            raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(_tensor_of(m))}")
    if "algorithm" in options:
        if options["algorithm"] in _non_matrix.NON_MATRIX_ALGORITHMS:
            return [{**{k: v for k, v in non_matrix.items() if k != "algorithm"}, **options, "params": members}]
        return [{**options, "params": members}]
    matrices = [m for m in members if _tensor_of(m).ndim >= 2]
    others = [m for m in members if _tensor_of(m).ndim < 2]
    out = []
    if matrices or not others:
        out.append({**options, "params": matrices, "algorithm": matrix_algorithm})
    if others:
        out.append({**non_matrix, **options, "params": others})
    return out


class Orthogonal(OptregOptimizer):
    """Shared machinery: routing, the AdamW / Lion branch, argument checks and the step's dispatch.

    A subclass sets ``ALGORITHM`` and implements :meth:`_matrix_step` (and may check shapes and options
    of its matrix groups in :meth:`_check_shape` and :meth:`_check_matrix_options`).
    """

    ALGORITHM = ""
    TRANSIENT = ("meshes",)

    def _init_transient(self) -> None:
        self.meshes = dict.fromkeys(ROLES)

    def __init__(
        self,
        params: Iterable[Any],
        *,
        defaults: dict[str, Any],
        adam_lr: float,
        adam_betas: tuple[float, float],
        adam_eps: float,
        adam_weight_decay: float,
        non_matrix_algorithm: str = "adamw",
        foreach: bool | None = None,
        meshes: Mapping[str, Any] | None = None,
    ) -> None:
        if non_matrix_algorithm not in _non_matrix.NON_MATRIX_ALGORITHMS:
            raise ValueError(
                f"non_matrix_algorithm must be one of {_non_matrix.NON_MATRIX_ALGORITHMS}, got {non_matrix_algorithm!r}"
            )
        check_number("lr", defaults["lr"], ge=0)
        check_number("adam_lr", adam_lr, ge=0)
        check_betas(adam_betas, 2, name="adam_betas")
        check_number("adam_eps", adam_eps, ge=0)
        check_number("adam_weight_decay", adam_weight_decay, ge=0)
        #: Options of the non-matrix update, for groups split by ``ndim`` (here and in ``add_param_group``).
        self.non_matrix_defaults = {"lr": adam_lr, "betas": tuple(adam_betas), "eps": adam_eps,
                                    "weight_decay": adam_weight_decay, "algorithm": non_matrix_algorithm}
        defaults = {"maximize": False, **defaults, "algorithm": self.ALGORITHM, "betas": tuple(adam_betas)}
        self.foreach = foreach
        self.non_matrix_algorithm = non_matrix_algorithm
        unknown = set(meshes or {}) - set(ROLES)
        if unknown:
            raise ValueError(f"meshes are given by role ({', '.join(ROLES)}); got {sorted(unknown)}")
        #: The parallelism strategy's device meshes by role (``optreg.parallel``), or ``None`` each: where the
        #: matrix step may split its work between ranks. They never change the result, only who computes
        #: it, so a copy or an unpickled optimizer (which has none) computes the same update on every rank.
        self.meshes: dict[str, Any] = {role: (meshes or {}).get(role) for role in ROLES}
        if isinstance(params, torch.Tensor):
            params = [params]
        super().__init__(params, defaults)

    @property
    def batch_matrices(self) -> bool:
        """Whether blocks of one shape may share one batched Newton-Schulz call: ``foreach`` True or None (the default).

        Not :func:`optreg.optim.use_foreach`'s policy (None: ``torch._foreach_*`` only on accelerators, since
        those elementwise ops lose to a loop on CPU): here ``foreach`` batches matrix products, which save
        launches on accelerators and, on CPU, pay for small blocks only. None batches where it pays: every
        block off CPU, on CPU blocks up to
        :data:`optreg_muon.functional.matrix.BATCH_MAX_ELEMENTS_PER_THREAD` elements per thread
        (``batch_blocks``); True batches every size (:attr:`batch_any_size`); ``foreach = False`` runs one
        call per block (the ops of ``torch.optim.Muon``).
        """
        return self.foreach is not False

    @property
    def batch_any_size(self) -> bool:
        """``foreach = True``: batch blocks of one shape whatever their size (fewer, larger calls). On CPU that
        loses a few percent on cores the step has to itself and wins when other processes compete for them."""
        return self.foreach is True

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group as the constructor does: split by ``ndim`` unless it names its ``algorithm``.

        So ``add_param_group({"params": [layer.weight, layer.bias]})`` sends the weight to the matrix
        update and the bias to ``non_matrix_algorithm`` with the ``adam_*`` options; named
        ``(name, tensor)`` pairs work as in torch. Groups are validated before any is added.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        routed = _route(param_group, self.ALGORITHM, self.non_matrix_defaults)
        for group in routed:
            self._validate_group(group)
        for group in routed:
            super().add_param_group(group)

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Reject, before it is added, a group this optimizer cannot step (clear message, nothing half-added)."""
        options = {**self.defaults, **group}
        algorithm = options["algorithm"]
        if algorithm not in (self.ALGORITHM, *_non_matrix.NON_MATRIX_ALGORITHMS):
            raise ValueError(
                f"{type(self).__name__} param groups take algorithm {self.ALGORITHM!r} or one of "
                f"{_non_matrix.NON_MATRIX_ALGORITHMS}, got {algorithm!r}"
            )
        refuse_complex(group["params"], type(self).__name__, COMPLEX_REASON)
        if algorithm != self.ALGORITHM:
            return
        for member in group["params"]:
            p = _tensor_of(member)
            if p.ndim < 2:
                raise ValueError(
                    f"{self.ALGORITHM} orthogonalizes matrices; a parameter of shape {tuple(p.shape)} "
                    f"belongs in a group with algorithm one of {_non_matrix.NON_MATRIX_ALGORITHMS}"
                )
            try:
                self._check_shape(p, options)
            except FieldValueError as exc:  # say which parameter does not fit
                if isinstance(member, tuple):
                    raise FieldValueError(exc.field, f"{member[0]}: {exc.message}", exc.index) from None
                raise
        self._check_matrix_options(options)

    # -- for subclasses

    def _check_shape(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        """Reject a matrix parameter the group's options cannot handle (at construction, not at step)."""

    def _check_matrix_options(self, options: dict[str, Any]) -> None:
        """Reject matrix-update options the step could not use."""

    def _matrix_step(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor], sf: torch.Tensor | None
    ) -> None:
        raise NotImplementedError

    # -- the step

    def _step_group(self, group: dict[str, Any], step_factor: torch.Tensor | None, loss: Any) -> None:
        params = params_with_grads(group)
        if not params:
            return
        refuse_complex(params, type(self).__name__, COMPLEX_REASON)  # made complex after construction
        if group["algorithm"] in _non_matrix.NON_MATRIX_ALGORITHMS:
            grads = [p.grad for p in params]
            _non_matrix.update(group["algorithm"], params, grads, [self.state[p] for p in params], group, step_factor)
            return
        params = [p for p in params if p.numel() > 0]
        if params:
            self._matrix_step(group, params, [p.grad for p in params], step_factor)
