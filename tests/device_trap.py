"""A second device on any machine, to test that code follows the model's device.

A CPU-only machine offers PyTorch no second device with real values, so ``AcceleratorTrap`` makes one up.
Inside it, the model's parameters and buffers report ``meta`` as their device. Whatever the code moves there
(``.to(model_device)``, ``device=...``, ``*_like``) stays on the CPU with its real values but is marked as on
the accelerator; everything else the code makes (``torch.zeros(n)``, ``.cpu()``, the data it was handed) is
marked as on the host. A torch call that mixes the two raises :class:`DeviceMismatch`, as CUDA would: a host
tensor may join an accelerator tensor only as a 0-dim scalar or as an index into it, and a CPU random
generator cannot draw on the accelerator. Tensors of unknown origin (what autograd or vmap makes inside)
match either side, so the trap never fails correct code, and it misses what happens inside ``vmap``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

FAKE = torch.device("meta")
HOST, ACCEL = "host", "accel"
_TAG = "_dcu_trap_place"
_COPIES = {torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.cuda, torch.Tensor.copy_, torch.Tensor.new_tensor,
           torch.Tensor.new_zeros, torch.Tensor.new_ones, torch.Tensor.new_empty, torch.Tensor.new_full}
_INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.index_select,
             torch.Tensor.index_put_, torch.Tensor.index_add_, torch.Tensor.index_add}
_DEVICE = torch.Tensor.device.__get__
_SET_DATA = torch.Tensor.data.__set__
_INHERITED = (torch.Tensor.grad.__get__, torch.Tensor.data.__get__, torch.Tensor.__deepcopy__)
_UNCHECKED = {torch.Tensor.backward, torch.autograd.grad, torch.Tensor.item, torch.Tensor.tolist,
              torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__bool__, torch.Tensor.__len__,
              torch.Tensor.__repr__, torch.Tensor.__format__, torch.Tensor.size, torch.Tensor.dim,
              torch.Tensor.numel, torch._has_compatible_shallow_copy_type}


class DeviceMismatch(RuntimeError):
    pass


def place(t: torch.Tensor) -> str | None:
    return getattr(t, _TAG, None)


def mark(t: torch.Tensor, where: str | None) -> torch.Tensor:
    if where is not None:
        setattr(t, _TAG, where)
    return t


def _tensors(tree) -> list:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _is_fake(device) -> bool:
    return device is not None and torch.device(device).type == "meta"


def _target(func, args, kwargs):
    """Where a call puts its result when it names a device: (ACCEL | HOST | None, args, kwargs) with the fake
    device replaced by the CPU."""
    if func is torch.Tensor.cpu:
        return HOST, args, kwargs
    device = kwargs.get("device")
    if func is torch.Tensor.to:
        rest = list(args[1:])
        for i, a in enumerate(rest):
            if isinstance(a, (str, torch.device)):
                device, rest[i] = a, "cpu"
            elif isinstance(a, torch.Tensor):   # .to(other): other's device and dtype
                return place(a), args[:1] + (a.dtype,), kwargs
        args = args[:1] + tuple(rest)
    if device is None:
        return None, args, kwargs
    kwargs = {**kwargs, "device": "cpu"} if "device" in kwargs else kwargs
    return (ACCEL if _is_fake(device) else HOST), args, kwargs


class AcceleratorTrap(TorchFunctionMode):
    """``with AcceleratorTrap(model): ...`` runs code as if ``model`` lived on an accelerator (see the module)."""

    def __init__(self, *modules: torch.nn.Module, host: tuple = ()):
        super().__init__()
        for module in modules:
            for t in list(module.parameters()) + list(module.buffers()):
                mark(t, ACCEL)
        for t in host:
            mark(t, HOST)

    def __enter__(self):
        # a deep-copied Parameter is built anew, out of this mode's sight: it keeps its side here
        self._deepcopy = copy_param = torch.nn.Parameter.__deepcopy__
        torch.nn.Parameter.__deepcopy__ = lambda param, memo: mark(copy_param(param, memo), place(param))
        return super().__enter__()

    def __exit__(self, *exc):
        torch.nn.Parameter.__deepcopy__ = self._deepcopy
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func == _DEVICE:
            return FAKE if place(args[0]) == ACCEL else func(*args)
        if func == _SET_DATA:   # Module.to / .cpu() swap a parameter's data in place: it moves with it
            out = func(*args, **kwargs)
            mark(args[0], place(args[1]))
            return out
        if func in _INHERITED:
            out = func(*args, **kwargs)
            return mark(out, place(args[0])) if out is not None and place(out) is None else out
        target, args, kwargs = _target(func, args, kwargs)
        inputs = _tensors((args, kwargs))
        if func not in _UNCHECKED and func not in _COPIES:
            self._check(func, args, kwargs, inputs, target)
        out = func(*args, **kwargs)
        if func in _UNCHECKED:
            return out
        if target is None and func in _INDEXING or func is torch.Tensor.copy_:
            target = place(args[0])
        elif target is None:
            places = {place(t) for t in inputs}
            target = ACCEL if ACCEL in places else HOST if HOST in places or not inputs else None
        return tree_map(lambda o: self._mark_out(o, func, inputs, target) if isinstance(o, torch.Tensor) else o, out)

    @staticmethod
    def _mark_out(out: torch.Tensor, func, inputs: list, target: str | None) -> torch.Tensor:
        if any(out is t for t in inputs):
            if place(out) == target or target is None:
                return out
            if place(out) is None and func not in _COPIES:   # an in-place op on a tensor of unknown origin
                return mark(out, target)
            # a move to the other side is a copy, as between devices; moving the caller's tensor itself would
            # leave it marked after this trap, and a later trap would see the caller's data on the accelerator
            return mark(out.clone(), target)
        return mark(out, target)

    @staticmethod
    def _check(func, args, kwargs, inputs, target) -> None:
        name = getattr(func, "__qualname__", None) or getattr(func, "__name__", str(func))
        if target == ACCEL and isinstance(kwargs.get("generator"), torch.Generator):
            raise DeviceMismatch(f"{name}: a CPU generator cannot draw on the accelerator.")
        if func is torch.Tensor.numpy and place(args[0]) == ACCEL:
            raise DeviceMismatch(f"{name}: an accelerator tensor must come to the host (.cpu()) before .numpy().")
        if func in _INDEXING:
            base = place(args[0])
            others = _tensors((args[1:], kwargs))
            if base == HOST and any(place(t) == ACCEL for t in others):
                raise DeviceMismatch(f"{name}: a host tensor indexed or written with accelerator tensors.")
            if base == ACCEL and func is torch.Tensor.__setitem__ and len(args) > 2 and _host_block(args[2]):
                raise DeviceMismatch(f"{name}: host values written into an accelerator tensor.")
            return
        if target == ACCEL or any(place(t) == ACCEL for t in inputs):
            host = [t for t in inputs if place(t) == HOST and t.dim() > 0]
            if host:
                raise DeviceMismatch(f"{name}: a host tensor of shape {tuple(host[0].shape)} meets the accelerator "
                                     f"(move it with .to(model_device) or create it with device=).")


def _host_block(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and place(value) == HOST and value.dim() > 0
