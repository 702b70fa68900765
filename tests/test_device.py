"""Every method follows the model's device: run under a made-up accelerator (``device_trap``), a method that
leaves a tensor on the host where the model's tensors are fails here as it would on a GPU."""
import pytest
import torch
from conftest import SMOKE_TRAIN
from device_trap import AcceleratorTrap, DeviceMismatch, place

import condense
import dcu
import unlearn
from dcu.forget import random_ids
from dcu.train import TrainConfig, train
from inversion_attacks.inversion import (
    CondensiveConfig,
    InversionConfig,
    condensive_inversion,
    gradient_inversion,
    unlearning_inversion,
)

TRAIN = TrainConfig(**{**SMOKE_TRAIN.__dict__, "epochs": 2})
# the fewest steps that reach every line of each method
QUICK = {"epochs": 1, "twin_epochs": 1, "warmup_epochs": 1, "fine_epochs": 1, "rounds": 2, "beginning_epochs": 1,
         "final_epochs": 1, "intermediate_epochs": 1, "forget_epochs": 1, "steps": 2, "max_rounds": 2, "samples": 16,
         "max_samples": 64, "reset_epochs": 0}
OWN = {"rni": {"epochs": 2}}   # one epoch with noise, one without


@pytest.fixture(scope="module")
def setup(digits):
    torch.manual_seed(0)
    model = dcu.create_model("convnet", in_channels=1, num_classes=10, image_size=8, width=16, depth=2)
    train(model, digits.train, TrainConfig(**{**SMOKE_TRAIN.__dict__, "epochs": 5}))
    forget_ids = random_ids(digits.train.ids, 0.1, 0)
    forget, retain = digits.train.subset(forget_ids), digits.train.without(forget_ids)
    cset = condense.get_condenser("fdm", ipc=2).condense(digits, model, "")
    return digits, model, forget, retain, cset


def _host_data(*sets):
    return tuple(t for s in sets if s is not None for t in (s.images, s.labels, s.ids))


def test_the_trap_catches_a_host_tensor_meeting_the_model():
    model = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with AcceleratorTrap(model, host=(x,)):
        assert model.weight.device.type == "meta"
        with pytest.raises(DeviceMismatch, match="host tensor"):
            model(x)
        with pytest.raises(DeviceMismatch), torch.no_grad():
            model.weight.add_(torch.randn(2, 3))        # made without device=: on the host
        with pytest.raises(DeviceMismatch, match="generator"):
            torch.randn(2, 3, generator=torch.Generator(), device=model.weight.device)
        out = model(x.to(model.weight.device))          # moved: fine, and on the accelerator
        assert place(out) == "accel" and place(out.detach().cpu()) == "host"
        with torch.no_grad():
            model.weight.add_(torch.randn(2, 3).to(model.weight.device) * torch.tensor(0.5))   # a host scalar is fine


def test_a_move_inside_the_trap_leaves_the_callers_tensor_where_it_was():
    # the caller's tensor is often shared (a module-scoped fixture): were it marked by one trap's .to(), the
    # next trap would see the caller's data on the accelerator
    model = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with AcceleratorTrap(model):
        moved = x.to(model.weight.device)
        assert place(moved) == "accel" and moved is not x
        assert torch.equal(moved, x)
    assert place(x) is None
    with AcceleratorTrap(model, host=(x,)):
        assert place(x.cpu() * torch.ones(3)) == "host"


@pytest.mark.parametrize("name", sorted(unlearn.list_unlearners()))
@pytest.mark.parametrize("with_condensed", [False, True], ids=["retain", "condensed"])
def test_method_follows_the_model_device(setup, name, with_condensed):
    splits, model, forget, retain, cset = setup
    unlearner = unlearn.get_unlearner(name, train_config=TRAIN)
    settings = {**{k: v for k, v in QUICK.items() if hasattr(unlearner.cfg, k)}, **OWN.get(name, {})}
    unlearner = unlearn.get_unlearner(name, train_config=TRAIN, **settings)
    if unlearner.requires_condensed and not with_condensed:
        pytest.skip(f"{name} needs a condensed set")
    condensed = cset if with_condensed else None
    if condensed is None:   # the trap checks every torch call in Python: keep the runs short
        retain = retain.subset(retain.ids[:300])
    if condensed is not None and not unlearner.uses_retain:
        pytest.skip(f"{name} does not use retain data")
    host = _host_data(retain, forget, splits.val) + (cset.images, cset.labels)
    with AcceleratorTrap(model, host=host):
        result = unlearner.unlearn(model, retain, forget, condensed=condensed, val=splits.val)
    assert all(place(p) == "accel" for p in result.model.parameters()), name


@pytest.mark.parametrize("name", sorted(condense.list_condensers()))
def test_condenser_follows_its_device(setup, name):
    splits, model, forget, retain, _ = setup
    quick = {"iterations": 2, "steps": 2, "inverter_steps": 2, "outer_loop": 1, "inner_loop": 1, "net_width": 8,
             "batch_real": 16, "pretrain_epochs": 1, "num_freqs": 16,
             "train_steps": 1}
    condenser = condense.get_condenser(name, ipc=2)
    condenser = condense.get_condenser(name, ipc=2, **{k: v for k, v in quick.items() if hasattr(condenser.cfg, k)})
    host = _host_data(splits.train, splits.val, splits.test)
    with AcceleratorTrap(model, host=host):
        cset = condenser.to(model.classifier.weight.device).condense(splits, model, "")
        refreshed = cset.refresh(forget.ids, retain, forget, device=model.classifier.weight.device)
    assert len(refreshed) > 0 and place(refreshed.images) != "accel"   # a condensed set comes back on the host


def test_inversion_attacks_follow_the_model_device(setup):
    splits, model, forget, retain, _ = setup
    other = unlearn.get_unlearner("finetune", train_config=TRAIN, epochs=1).unlearn(model, retain, forget).model
    shape = tuple(forget.images.shape[1:])
    with AcceleratorTrap(model, other, host=_host_data(forget)):
        cfg = InversionConfig(per_class=1, steps=2)
        for images in (gradient_inversion(model, shape, cfg), unlearning_inversion(model, other, shape, cfg),
                       condensive_inversion(model, forget, CondensiveConfig(per_class=1, steps=2, width=8))):
            assert place(images.images) == "host" and len(images) == 10
