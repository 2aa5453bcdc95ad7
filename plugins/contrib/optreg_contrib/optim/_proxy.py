"""An optimizer that drives an inner optimizer built over stand-ins ("proxies") of its parameters.

GaLore's inner optimizer steps low-rank coordinates of each matrix; split_complex's inner optimizer
steps the real views of complex parameters. The outer optimizer keeps torch's contract for the real
parameters: its ``param_groups`` hold them (with the inner groups' options: schedulers and group edits
reach the inner optimizer through :meth:`ProxyOptimizer._sync_groups`), and its ``state[p]`` *is* the
inner optimizer's state dict of ``p``'s proxy (the same dict object), so ``state_dict()`` /
``load_state_dict()`` checkpoint the inner state under the real parameters, in torch's shape.

Proxies are rebuilt, never pickled (a view's storage sharing does not survive a copy): after
unpickling and after loading a state dict, :meth:`_relink` makes fresh proxies and points the inner
optimizer's groups and state at them. Inner group ``i``'s ``params[j]`` is the proxy of outer group
``i``'s ``params[j]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

import torch

from optreg.optim import OptregOptimizer, give_loss, run_closure

__all__ = ["ProxyOptimizer"]

#: Keys of a group that are not options.
_NOT_OPTIONS = ("params", "param_names")


def _tensors(params: Any) -> list[torch.Tensor]:
    """A group's params as tensors (torch accepts ``(name, tensor)`` pairs too)."""
    return [p[1] if isinstance(p, tuple) else p for p in params]


class ProxyOptimizer(OptregOptimizer):
    """Base of optimizers whose inner optimizer steps proxies of the parameters (see the module doc)."""

    def __init__(
        self, params: Any, build_inner: Callable[[list[dict[str, Any]]], torch.optim.Optimizer], **settings: Any
    ) -> None:
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        groups = [dict(g) for g in params] if params and isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            group["params"] = list(group["params"])
        self._settings = settings
        proxy_groups = []
        for group in groups:
            options = {k: v for k, v in group.items() if k not in _NOT_OPTIONS}
            proxies = [self._make_proxy(p, group) for p in _tensors(group["params"])]
            proxy_groups.append({**options, "params": proxies})
        inner = build_inner(proxy_groups)
        if len(inner.param_groups) != len(groups):
            raise TypeError(f"inner optimizer {type(inner).__name__} regrouped its parameters; it cannot be wrapped")
        outer = [{**_options(ig), "params": g["params"]} for g, ig in zip(groups, inner.param_groups)]
        super().__init__(outer, dict(inner.defaults))
        self.inner = inner
        self._link_state()

    # -- what subclasses define

    def _make_proxy(self, p: torch.Tensor, group: Mapping[str, Any]) -> torch.Tensor:
        """The tensor the inner optimizer steps in place of ``p`` (``p`` itself when it needs none)."""
        return p

    def _proxy_grad(self, p: torch.Tensor, proxy: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        """The gradient the inner optimizer sees for ``proxy`` (``p.grad`` is not None)."""
        raise NotImplementedError

    def _after_inner_step(self, pairs: list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]) -> None:
        """Carry the proxies' updates over to the parameters (``pairs``: (p, proxy, group) stepped this time)."""

    # -- linking

    def _pairs(self) -> list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]:
        return [
            (p, q, group)
            for group, inner_group in zip(self.param_groups, self.inner.param_groups)
            for p, q in zip(_tensors(group["params"]), inner_group["params"])
        ]

    def _link_state(self) -> None:
        """The inner optimizer's state of each proxy is this optimizer's state dict of its parameter."""
        self.inner.state = _LinkedState(self, {id(q): p for p, q, _ in self._pairs()})

    def _relink(self) -> None:
        """Fresh proxies (after a copy or a load), then the state links."""
        for group, inner_group in zip(self.param_groups, self.inner.param_groups):
            inner_group["params"] = [self._make_proxy(p, group) for p in _tensors(group["params"])]
        if isinstance(self.inner, ProxyOptimizer):  # its parameters are the fresh proxies: its own go stale
            self.inner._relink()
        self._link_state()

    def _init_transient(self) -> None:
        if "inner" in self.__dict__:  # after unpickling (the constructor links once the inner optimizer exists)
            self._relink()

    def _after_load_state_dict(self, state_dict: Mapping[str, Any] | None) -> None:
        self._relink()

    def _sync_groups(self) -> None:
        for group, inner_group in zip(self.param_groups, self.inner.param_groups):
            for key, value in group.items():
                if key not in _NOT_OPTIONS:
                    inner_group[key] = value

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if "inner" not in self.__dict__:  # torch's constructor registering the first groups
            super().add_param_group(param_group)
            return
        group = {**param_group, "params": list(param_group["params"]) if not isinstance(
            param_group["params"], torch.Tensor) else [param_group["params"]]}
        options = {k: v for k, v in group.items() if k not in _NOT_OPTIONS}
        proxies = [self._make_proxy(p, {**self.defaults, **group}) for p in _tensors(group["params"])]
        self.inner.add_param_group({**options, "params": proxies})
        super().add_param_group({**_options(self.inner.param_groups[-1]), "params": group["params"]})
        self._link_state()

    # -- the step

    def _inner_step(self, step_factor: torch.Tensor | None) -> None:
        if step_factor is None:
            self.inner.step()
        else:
            self.inner.step(step_factor=step_factor)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, step_factor: torch.Tensor | None = None) -> Any:
        """Evaluate the closure, hand the proxies their gradients, step the inner optimizer, carry the updates back."""
        loss = run_closure(closure)
        self._sync_groups()
        stepped = []
        for p, q, group in self._pairs():
            if p.grad is None:
                if q is not p:
                    q.grad = None
                continue
            if q is not p:
                q.grad = self._proxy_grad(p, q, group)
            stepped.append((p, q, group))
        if loss is not None:
            give_loss(self.inner, loss)
        self._inner_step(step_factor)
        self._after_inner_step(stepped)
        for p, q, _ in stepped:
            if q is not p:
                q.grad = None
        return loss

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


class _LinkedState(MutableMapping):
    """The inner optimizer's ``state``: ``state[proxy]`` is the owner's ``state[param]``, looked up each time
    (no entry is created before the inner optimizer asks, and an entry the outer state replaced is seen), in
    the owner's state as it is at that moment."""

    def __init__(self, owner: Any, params: dict[int, torch.Tensor]) -> None:
        self._owner = owner
        self._params = params

    @property
    def _outer(self) -> Any:
        # the owner's state as it is now: a proxy optimizer nested in another (split_complex around galore) has
        # its own state relinked to the outer one after it linked its inner optimizer's
        return self._owner.state

    def _param(self, proxy: Any) -> torch.Tensor:
        try:
            return self._params[id(proxy)]
        except KeyError:
            raise KeyError(proxy) from None

    def __getitem__(self, proxy: Any) -> dict[str, Any]:
        return self._outer[self._param(proxy)]  # the outer state is a defaultdict(dict)

    def __setitem__(self, proxy: Any, value: dict[str, Any]) -> None:
        self._outer[self._param(proxy)] = value

    def __delitem__(self, proxy: Any) -> None:
        del self._outer[self._param(proxy)]

    def __contains__(self, proxy: object) -> bool:
        p = self._params.get(id(proxy))
        return p is not None and p in self._outer

    def __iter__(self) -> Iterator[Any]:
        return iter([])  # proxies are not kept here; the outer optimizer's state_dict() is the checkpoint

    def __len__(self) -> int:
        return sum(1 for p in self._params.values() if p in self._outer)

    def __reduce__(self) -> Any:
        return (dict, ())  # rebuilt by the outer optimizer after unpickling (_relink)


def _options(group: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in group.items() if k not in _NOT_OPTIONS}
