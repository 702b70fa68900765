"""Every unlearning method on noisy digits: it moves the model the way it claims, within a stated retain bound.

The original is a small ConvNet that memorised 25% wrong labels, so a forget request holds samples only
memorisation explains, and forgetting them shows as a drop in forget accuracy or forget confidence. Settings
are scaled to this tiny problem (the shipped defaults are for the CIFAR-10 presets); the bound says how much
retain accuracy a method may lose here, stated per method.
"""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import SMOKE_TRAIN

import condense
import dcu
import unlearn
from dcu.forget import random_ids
from dcu.train import TrainConfig, accuracy, predict, train
from unlearn.common import batch_gradient_importance, fisher_diagonal, joined
from unlearn.ct import transpose_kernels
from unlearn.salun import saliency_masks

TRAIN = TrainConfig(**{**SMOKE_TRAIN.__dict__, "epochs": 60})

# method -> (settings for this problem, the retain accuracy it may lose)
CASES = {
    "finetune": ({"epochs": 20, "lr": 0.05}, 0.15),
    "gradient_ascent": ({"epochs": 3, "lr": 0.01}, 0.15),
    "neggrad_plus": ({"epochs": 10, "lr": 0.05, "alpha": 0.9}, 0.15),
    "random_label": ({"epochs": 10, "lr": 0.05}, 0.15),
    "l1_sparse": ({"epochs": 20, "lr": 0.05, "gamma": 1e-4}, 0.15),
    "salun": ({"epochs": 10, "lr": 0.05}, 0.15),
    "scrub": ({"epochs": 10, "lr": 0.02, "forget_epochs": 5, "alpha": 0.5, "gamma": 1.0, "batch_forget": 64}, 0.20),
    "bad_teacher": ({"epochs": 5, "lr": 1e-3}, 0.25),
    "ssd": ({"alpha": 50.0}, 0.55),   # knife-edge here: which weights pass α·I_d moves with float summation order
    # (retain 0.50 or above 0.70 at α 50, depending on the tests run before it); α 10 takes 74% of retain
    "fisher": ({"alpha": 0.02}, 0.40),
    "influence": ({"alpha": 0.01}, 0.40),
    "cf_k": ({"k": 2, "epochs": 20, "lr": 0.05}, 0.15),
    "eu_k": ({"k": 2, "epochs": 30}, 0.25),
    "msg": ({"epochs": 20, "lr": 0.02}, 0.25),
    "ct": ({"epochs": 20, "lr": 0.02}, 0.3),   # recovers to ~0.75 from transposed kernels on either thread count
    "fcs": ({"epochs": 5, "lr": 0.02, "forget_lr": 0.01, "uniform_lr": 0.05}, 0.20),
    "cfw": ({"epochs": 20, "lr": 0.02}, 0.30),
    "prmq": ({"epochs": 20, "lr": 0.01}, 0.30),
    "kde": ({"epochs": 20, "lr": 0.02, "warmup_lr": 0.02}, 0.25),
    "rni": ({"epochs": 20, "fine_epochs": 10, "lr": 0.02, "fine_lr": 0.02}, 0.30),
    "amun": ({"epochs": 10, "lr": 0.02, "steps": 10}, 0.20),
    "modular": ({"rounds": 3, "beginning_epochs": 3, "final_epochs": 5, "intermediate_epochs": 5, "lr": 0.1,
                 "intermediate_lr": 0.1}, 0.20),
    "tmu": ({"epochs": 10, "lr": 0.01, "twin_epochs": 30}, 0.30),
    "retrain": ({}, 0.10),
}


@pytest.fixture(scope="module")
def conv_setup(noisy_digits):
    splits = noisy_digits
    torch.manual_seed(0)
    model = dcu.create_model("convnet", in_channels=1, num_classes=10, image_size=8, width=32, depth=2)
    train(model, splits.train, TrainConfig(**{**TRAIN.__dict__, "epochs": 80}))
    forget_ids = random_ids(splits.train.ids, 0.1, 0)
    forget, retain = splits.train.subset(forget_ids), splits.train.without(forget_ids)
    return splits, model, forget, retain


def confidence(model, data):
    """Mean probability the model gives the (training) label."""
    return F.softmax(predict(model, data.images), 1).gather(1, data.labels.view(-1, 1)).mean().item()


def test_every_registered_method_has_a_case():
    assert set(unlearn.list_unlearners()) - {"dcu"} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_method_forgets_within_its_retain_bound(conv_setup, name):
    splits, original, forget, retain = conv_setup
    settings, retain_bound = CASES[name]
    unlearner = unlearn.get_unlearner(name, train_config=TRAIN, **settings)
    result = unlearner.unlearn(original, retain, forget, val=splits.val)
    model = result.model
    before_acc, before_conf = accuracy(original, forget), confidence(original, forget)
    assert before_acc > 0.95
    after_acc, after_conf = accuracy(model, forget), confidence(model, forget)
    assert after_acc < before_acc - 0.05 or after_conf < before_conf - 0.05, (name, after_acc, after_conf)
    assert accuracy(model, retain) > accuracy(original, retain) - retain_bound, (name, accuracy(model, retain))
    for p in model.parameters():
        assert torch.isfinite(p).all()


@pytest.fixture(scope="module")
def condensed(conv_setup):
    splits, original, _, _ = conv_setup
    return condense.get_condenser("fdm", ipc=5).condense(splits, original, "")


@pytest.mark.parametrize("name", sorted(CASES))
def test_method_accepts_a_condensed_retain_set(conv_setup, condensed, name):
    splits, original, forget, retain = conv_setup
    cset = condensed
    settings = {**CASES[name][0], **({"epochs": 1} if "epochs" in CASES[name][0] else {})}
    unlearner = unlearn.get_unlearner(name, train_config=TrainConfig(**{**TRAIN.__dict__, "epochs": 2}), **settings)
    result = unlearner.unlearn(original, retain, forget, condensed=cset, val=splits.val)
    model = result.model
    if unlearner.uses_retain:
        assert result.stats["condensed_images"] <= 50
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_salun_mask_survives_weight_decay_and_momentum(conv_setup):
    splits, original, forget, retain = conv_setup
    masks = saliency_masks(original, forget, 0.3)
    train_cfg = TrainConfig(**{**TRAIN.__dict__, "weight_decay": 0.05, "momentum": 0.99})
    result = unlearn.get_unlearner("salun", train_config=train_cfg, threshold=0.3, epochs=3, lr=0.05).unlearn(original, retain, forget)
    model = result.model
    moved = 0
    for (name, p), p0 in zip(model.named_parameters(), original.parameters()):
        frozen = ~masks[name]
        assert torch.equal(p[frozen], p0[frozen]), name
        moved += int((p[masks[name]] != p0[masks[name]]).sum())
    assert moved > 0


def test_ct_transposes_every_conv_kernel(conv_setup):
    _, original, forget, retain = conv_setup
    model = dcu.create_model("convnet", in_channels=1, num_classes=10, image_size=8, width=8, depth=2)
    before = [m.weight.detach().clone() for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert transpose_kernels(model) == len(before) == 2
    after = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    for b, a in zip(before, after):
        assert torch.equal(a, b.transpose(2, 3))
        assert not torch.equal(a, b)
    with pytest.raises(ValueError, match="has none"):
        unlearn.get_unlearner("ct").unlearn(dcu.create_model("mlp", in_channels=1, num_classes=10, image_size=8),
                                            retain, forget)


def test_ssd_touches_only_selected_parameters(conv_setup):
    splits, original, forget, retain = conv_setup
    alpha = 50.0
    unlearner = unlearn.get_unlearner("ssd", alpha=alpha)
    result = unlearner.unlearn(original, retain, forget)
    model = result.model
    data, _ = joined(retain, forget)
    importance_all = batch_gradient_importance(original, data, batch_size=unlearner.cfg.batch_size)
    importance_forget = batch_gradient_importance(original, forget, batch_size=unlearner.cfg.batch_size)
    changed_total = 0
    for (name, p), p0 in zip(model.named_parameters(), original.parameters()):
        selected = importance_forget[name] > alpha * importance_all[name]
        changed = p != p0
        assert not (changed & ~selected).any(), name           # nothing outside the selection moved
        assert (p[selected].abs() <= p0[selected].abs() + 1e-7).all()   # dampened, never amplified
        changed_total += int(changed.sum())
    assert 0 < changed_total <= result.stats["dampened_weights"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_method_handles_a_class_left_empty(conv_setup, condensed, name):
    """Forgetting a whole class leaves a class with no retain sample: every method still runs and stays finite."""
    splits, original, _, _ = conv_setup
    forget_ids = splits.train.ids[splits.train.labels == 5]
    forget, retain = splits.train.subset(forget_ids), splits.train.without(forget_ids)
    settings = {**CASES[name][0], **({"epochs": 1} if "epochs" in CASES[name][0] else {})}
    unlearner = unlearn.get_unlearner(name, train_config=TrainConfig(**{**TRAIN.__dict__, "epochs": 2}), **settings)
    result = unlearner.unlearn(original, retain, forget, val=splits.val)
    model = result.model
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.isfinite(predict(model, forget.images)).all()   # an empty class's mean must not leak a NaN


def test_tmu_forgets_a_class_left_without_retain_samples(conv_setup):
    """A retrained model cannot predict a class it never saw: TMU forgets all of it, whatever its predictor says."""
    splits, original, _, _ = conv_setup
    forget_ids = splits.train.ids[splits.train.labels == 5]
    forget, retain = splits.train.subset(forget_ids), splits.train.without(forget_ids)
    unlearner = unlearn.get_unlearner("tmu", train_config=TRAIN)
    result = unlearner.unlearn(original, retain, forget, val=splits.val)
    model = result.model
    assert result.stats["forgotten_fraction"] == 1.0
    assert accuracy(model, forget) < 0.5 < accuracy(original, forget)
    assert accuracy(model, retain) > accuracy(original, retain) - 0.3


@pytest.fixture(scope="module")
def class_request(conv_setup):
    splits, original, _, _ = conv_setup
    forget_ids = splits.train.ids[splits.train.labels == 3]
    return splits.train.subset(forget_ids), splits.train.without(forget_ids)


@pytest.mark.parametrize("name, settings", [("fisher", {"alpha": 1e-3})])
def test_methods_without_training_forget_a_whole_class(conv_setup, class_request, name, settings):
    """Fisher's class rows take a whole class away and keep the others."""
    splits, original, _, _ = conv_setup
    forget, retain = class_request
    assert accuracy(original, forget) > 0.95
    result = unlearn.get_unlearner(name, **settings).unlearn(original, retain, forget)
    model = result.model
    assert accuracy(model, forget) < 0.2, accuracy(model, forget)
    assert accuracy(model, retain) > accuracy(original, retain) - 0.15


def test_ssd_importances_are_squared_mini_batch_mean_gradients(conv_setup, class_request):
    """As the reference computes them (calc_importance): eval mode, per batch the squared gradient of the
    batch's mean loss, averaged over batches. A per-sample Fisher ratio can never pass |D| / |D_f|, which is
    why the paper's α = 10 selected nothing with it on a tenth of the data; mini-batch means can."""
    _, original, _, _ = conv_setup
    forget, retain = class_request
    data, _ = joined(retain, forget)
    importance = batch_gradient_importance(original, forget, batch_size=64)
    model = copy.deepcopy(original).eval()
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    starts = range(0, len(forget), 64)
    for start in starts:
        model.zero_grad()
        F.cross_entropy(model(forget.images[start : start + 64]), forget.labels[start : start + 64]).backward()
        for n, p in model.named_parameters():
            expected[n] += p.grad.pow(2) / len(starts)
    for n in expected:
        assert torch.allclose(importance[n], expected[n], rtol=1e-4, atol=1e-12), n
    bound = len(data) / len(forget)
    per_sample = {n: fisher_diagonal(original, forget)[n] / fisher_diagonal(original, data)[n].clamp_min(1e-30)
                  for n in expected}
    batch = batch_gradient_importance(original, data, batch_size=128)
    mini = {n: batch_gradient_importance(original, forget, batch_size=128)[n] / batch[n].clamp_min(1e-30)
            for n in expected}
    assert max(float(r.max()) for r in per_sample.values()) <= bound * 1.001
    assert max(float(r.max()) for r in mini.values()) > bound
