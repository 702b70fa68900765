"""The ``Unlearner`` interface and the unlearning registry.

``unlearner.unlearn(model, retain, forget, *, condensed=None, val=None) -> UnlearnResult`` never changes the
model it is given; the result holds the unlearned model, the run's statistics (``seconds`` and what the
method records) and the condensed set refreshed for the request (when one was given and the method used it). ``retain`` and ``forget`` are :class:`~dcu.data.ImageSet` views of the training split,
``condensed`` a condensed retain set to use in place of ``retain`` (refreshed for the request inside the
call, so its cost counts as online time), ``val`` held-out training images for methods that calibrate.
The base class validates, copies, seeds and times; a method implements ``run``.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from dcu.data import ImageSet
from dcu.registry import Registry
from dcu.train import TrainConfig, model_device

UNLEARNERS = Registry("unlearning method")


@dataclass
class UnlearnResult:
    """What one call of :meth:`Unlearner.unlearn` produced."""
    model: nn.Module
    stats: Dict[str, Any]            # "seconds" (online time) and whatever the method records
    refreshed: Optional[Any] = None  # the condensed set without the forget ids, when the method refreshed one

    @property
    def seconds(self) -> float:
        return self.stats["seconds"]


@dataclass
class UnlearnConfig:
    seed: int = 0


class Unlearner:
    name: str = ""
    Config = UnlearnConfig
    requires_condensed: bool = False
    uses_retain: bool = True        # False: the method looks at the forget set alone (then a condensed set is unused)
    # name -> (low, high, "log" | "linear" | "int") or a list of choices; what a tuner searches over
    search_space: Dict[str, Any] = {}

    def __init__(self, cfg: Optional[UnlearnConfig] = None, *, train_config: Optional[TrainConfig] = None, **kwargs: Any):
        self.cfg = cfg if cfg is not None else self.Config(**kwargs)
        self.train_config = train_config or TrainConfig()  # the original model's schedule
        self.stats: Dict[str, Any] = {}     # filled during one run, handed over in its UnlearnResult
        self._refreshed = None
        self.device = torch.device("cpu")   # the model's, set by unlearn(); a refresh computes there too

    def unlearn(self, model: nn.Module, retain: ImageSet, forget: ImageSet, *, condensed=None,
                val: Optional[ImageSet] = None) -> UnlearnResult:
        if len(forget) == 0:
            raise ValueError("The forget set is empty: there is nothing to unlearn.")
        if len(retain) == 0:
            raise ValueError("The retain set is empty: every training sample would be forgotten.")
        if torch.isin(forget.ids, retain.ids).any():
            raise ValueError("The retain and forget sets share sample ids; the retain set must exclude the forget set.")
        if self.requires_condensed and condensed is None:
            raise ValueError(f"Unlearning method '{self.name}' needs a condensed set (--condensed condensed.pt).")
        model = copy.deepcopy(model)
        self.device = model_device(model)
        torch.manual_seed(self.cfg.seed)
        start = time.perf_counter()
        self.stats, self._refreshed = {}, None
        model = self.run(model, retain, forget, condensed=condensed, val=val)
        if self.device.type == "cuda":   # the queued work is part of the time
            torch.cuda.synchronize(self.device)
        self.stats["seconds"] = time.perf_counter() - start
        for name, p in model.state_dict().items():
            if p.is_floating_point() and not torch.isfinite(p).all():
                raise FloatingPointError(f"Unlearning with '{self.name}' produced non-finite weights in {name}.")
        result = UnlearnResult(model.eval(), self.stats, self._refreshed)
        self.stats, self._refreshed = {}, None
        return result

    def run(self, model: nn.Module, retain: ImageSet, forget: ImageSet, *, condensed, val) -> nn.Module:
        raise NotImplementedError

    def retain_data(self, retain: ImageSet, forget: ImageSet, condensed) -> ImageSet:
        """The data that stands for the retain set: the refreshed condensed set when one is given."""
        if condensed is None:
            return retain
        start = time.perf_counter()
        refreshed = condensed.refresh(forget.ids, retain, forget, device=self.device)
        self.stats["refresh_seconds"] = time.perf_counter() - start
        self.stats["condensed_images"] = len(refreshed)
        self._refreshed = refreshed
        return refreshed.as_imageset()

    def schedule(self, **overrides: Any) -> TrainConfig:
        """A ``TrainConfig`` from the original schedule, with this method's settings on top."""
        base = asdict(self.train_config)
        own = {f.name: getattr(self.cfg, f.name) for f in fields(self.cfg) if f.name in base}
        base.update({k: v for k, v in own.items() if v is not None})
        base.update(overrides)
        return TrainConfig(**base)

    def config_dict(self) -> Dict[str, Any]:
        return asdict(self.cfg)


def register_unlearner(cls):
    UNLEARNERS.register(cls.name)(cls)
    return cls


def get_unlearner(name: str, *, train_config: Optional[TrainConfig] = None, **cfg: Any) -> Unlearner:
    return UNLEARNERS.create(name, _builder={"train_config": train_config}, **cfg)


def list_unlearners() -> List[str]:
    return UNLEARNERS.names()
