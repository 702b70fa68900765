"""Your own model: dcu.models.wrap gives a plain nn.Sequential, a torchvision classifier or a timm-style model
the protocol every method uses; every unlearning method and condenser runs on one, and a registered builder's
checkpoints load in a new process once its module is imported."""
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from conftest import SMOKE_TRAIN
from test_condense_suite import METHODS as CONDENSE_SETTINGS
from test_unlearn_suite import CASES

import condense
import unlearn
from dcu.forget import random_ids
from dcu.models import num_classes, wrap
from dcu.train import TrainConfig, accuracy, train

TRAIN = TrainConfig(**{**SMOKE_TRAIN.__dict__, "epochs": 20})


def user_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


@pytest.fixture(scope="module")
def own(digits):
    torch.manual_seed(0)
    model = wrap(user_net())
    train(model, digits.train, TRAIN)
    forget_ids = random_ids(digits.train.ids, 0.1, 0)
    return model, digits.train.subset(forget_ids), digits.train.without(forget_ids)


def test_wrap_gives_the_protocol_and_keeps_the_function(own):
    model, forget, _ = own
    x = forget.images[:8]
    assert torch.equal(model(x), model.module(x))
    assert model.forward_features(x).shape == (8, model.feature_dim) == (8, 64)
    assert num_classes(model) == 10 and model.get_classifier() is model.module[-1]
    out = x
    for stage in model.stages():
        out = stage(out)
    assert torch.allclose(out, model(x))


def test_wrap_reads_torchvision_and_timm_style_models():
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.resnet18(num_classes=7)
    x = torch.randn(2, 3, 32, 32)
    before = net.eval()(x)
    wrapped = wrap(net)
    assert torch.allclose(wrapped.eval()(x), before, atol=1e-5) and num_classes(wrapped) == 7
    assert wrapped.feature_dim == 512

    class TimmLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8, 5)

        def forward_features(self, x):
            return self.body(x)

        def forward_head(self, x, pre_logits=False):
            x = x.mean((2, 3))
            return x if pre_logits else self.fc(x)

        def get_classifier(self):
            return self.fc

        def forward(self, x):
            return self.forward_head(self.forward_features(x))

    timm_like = TimmLike()
    assert torch.allclose(wrap(timm_like)(x), timm_like(x)) and wrap(timm_like).feature_dim == 8
    params = {id(p) for stage in wrap(timm_like).stages() for p in stage.parameters()}
    assert params == {id(p) for p in timm_like.parameters()}    # every weight belongs to a stage


def test_wrap_refuses_what_it_cannot_read_naming_what_is_missing():
    with pytest.raises(TypeError, match="ends in ReLU, not an nn.Linear"):
        wrap(nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.ReLU()))
    with pytest.raises(TypeError, match="cannot find the classifier of Conv2d"):
        wrap(nn.Conv2d(1, 1, 1))


@pytest.mark.parametrize("name", sorted(unlearn.list_unlearners()))
def test_every_unlearning_method_runs_on_your_own_model(own, digits, name):
    model, forget, retain = own
    settings = {} if name == "dcu" else CASES[name][0]
    cset = condense.get_condenser("fdm", ipc=5).condense(digits, model, "") if name in ("dcu", "modular") else None
    result = unlearn.get_unlearner(name, train_config=TRAIN, **settings).unlearn(model, retain, forget, condensed=cset,
                                                                                val=digits.val)
    before = dict(model.state_dict())
    after = result.model.state_dict()
    assert set(after) == set(before)                   # the same architecture came back
    assert any(not torch.equal(after[k], before[k]) for k in before)
    assert accuracy(result.model, digits.test) > 0.5   # still a digit classifier (chance is 0.1)


@pytest.mark.parametrize("name", sorted(condense.list_condensers()))
def test_every_condenser_runs_on_your_own_model(own, digits, name):
    model, forget, retain = own
    settings = {"ipc": 2, **CONDENSE_SETTINGS.get(name, {})}
    cset = condense.get_condenser(name, **settings).condense(digits, model, "")
    assert len(cset) == 20 and torch.equal(torch.bincount(cset.labels), torch.full((10,), 2))
    refreshed = cset.refresh(forget.ids, retain, forget)
    assert not torch.isin(refreshed.members, forget.ids).any()


def test_a_plain_mlp_is_refused_by_methods_that_need_convolutions(digits):
    mlp = wrap(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)))
    forget_ids = random_ids(digits.train.ids, 0.1, 0)
    for name in ("msg", "ct", "cfw"):
        with pytest.raises(ValueError, match="has none"):
            unlearn.get_unlearner(name).unlearn(mlp, digits.train.without(forget_ids), digits.train.subset(forget_ids))


BUILDER = '''
import torch.nn as nn
from dcu.models import register_model, wrap

@register_model("tinyconv")
def tinyconv(*, in_channels: int = 1, num_classes: int = 10, image_size: int = 8, width: int = 8):
    return wrap(nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten(), nn.Linear(width, num_classes)))
'''


def test_a_registered_builder_trains_and_loads_in_a_new_process_with_import(tmp_path):
    (tmp_path / "mymodels.py").write_text(BUILDER)
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    run = [sys.executable, "-m", "dcu"]
    train_cmd = run + ["train", "--import", "mymodels", "--dataset", "digits", "--model", "tinyconv", "--epochs", "2",
                       "--out", str(tmp_path / "m.pt"), "--quiet"]
    assert subprocess.run(train_cmd, env=env, capture_output=True, text=True).returncode == 0
    without = subprocess.run(run + ["export", str(tmp_path / "m.pt"), "--out", str(tmp_path / "m.safetensors")],
                             env=env, capture_output=True, text=True)
    assert without.returncode == 2
    assert "'tinyconv' model (registered by module 'mymodels')" in without.stderr and "--import" in without.stderr
    with_import = subprocess.run(run + ["export", "--import", "mymodels", str(tmp_path / "m.pt"), "--out",
                                        str(tmp_path / "m.safetensors")], env=env, capture_output=True, text=True)
    assert with_import.returncode == 0, with_import.stderr
    assert (tmp_path / "m.safetensors").stat().st_size > 0


def test_dcu_import_makes_a_checkpoint_of_outside_weights_that_requests_can_use(tmp_path):
    import dcu
    from dcu.workflows.cli import main

    torch.manual_seed(0)
    outside = dcu.create_model("mlp", in_channels=1, num_classes=10, image_size=8)
    torch.save({"module." + k: v for k, v in outside.state_dict().items()}, tmp_path / "w.pt")   # from DDP
    assert main(["import", str(tmp_path / "w.pt"), "--dataset", "digits", "--model", "mlp", "--epochs", "3",
                 "--out", str(tmp_path / "m.pt"), "--quiet"]) == 0
    model, meta = dcu.load_checkpoint(tmp_path / "m.pt")
    assert meta["kind"] == "imported" and meta["train_config"]["epochs"] == 3 and meta["holdout"]["frac"] == 0.1
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), outside.state_dict().values()))
    assert main(["export", str(tmp_path / "m.pt"), "--out", str(tmp_path / "m.safetensors"), "--quiet"]) == 0
    assert main(["import", str(tmp_path / "m.safetensors"), "--dataset", "digits", "--model", "mlp",
                 "--out", str(tmp_path / "again.pt"), "--quiet"]) == 0
    assert main(["forget", "--dataset", "digits", "--model", str(tmp_path / "again.pt"), "--forget-frac", "0.1",
                 "--method", "finetune", "--set", "epochs=1", "--out", str(tmp_path / "u.pt"), "--quiet"]) == 0


def test_dcu_import_refuses_weights_of_another_architecture_naming_the_weight(tmp_path, capsys):
    from dcu.workflows.cli import main

    torch.save({"features.1.weight": torch.zeros(3, 3)}, tmp_path / "w.pt")
    assert main(["import", str(tmp_path / "w.pt"), "--dataset", "digits", "--model", "mlp", "--out",
                 str(tmp_path / "m.pt")]) == 2
    assert "does not fit a mlp" in capsys.readouterr().err and not (tmp_path / "m.pt").exists()
