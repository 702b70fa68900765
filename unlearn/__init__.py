"""Unlearning methods behind one interface; ``get_unlearner(name, **cfg)`` builds one."""
from . import (  # noqa: F401,E402  (registration)
    amun,
    bad_teacher,
    cf_k,
    cfw,
    ct,
    dcu,
    fcs,
    finetune,
    fisher,
    gradient_ascent,
    influence,
    kde,
    l1_sparse,
    modular,
    msg,
    neggrad_plus,
    prmq,
    random_label,
    retrain,
    rni,
    salun,
    scrub,
    ssd,
    tmu,
)
from .base import UNLEARNERS, UnlearnConfig, Unlearner, get_unlearner, list_unlearners

__all__ = ["UNLEARNERS", "UnlearnConfig", "Unlearner", "get_unlearner", "list_unlearners"]
