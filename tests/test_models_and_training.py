import pytest
import torch

import dcu
from dcu.train import TrainConfig, augment_batch, train


@pytest.mark.parametrize("name", ["convnet", "mlp", "resnet18", "vgg11"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_every_model_fits_every_input_shape(name, shape):
    c, h, _ = shape
    model = dcu.create_model(name, in_channels=c, num_classes=7, image_size=h).eval()
    x = torch.randn(3, *shape)
    assert model(x).shape == (3, 7)
    assert model.forward_features(x).shape == (3, model.feature_dim)


def test_create_model_rejects_unknown_names_with_the_valid_ones():
    with pytest.raises(ValueError, match="Valid values are: convnet, mlp, resnet18, vgg11"):
        dcu.create_model("alexnet")


def test_convnet_defaults_follow_the_condensation_literature():
    model = dcu.create_model("convnet", in_channels=3, num_classes=10, image_size=32)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 and all(c.out_channels == 128 for c in convs)
    assert any(isinstance(m, torch.nn.GroupNorm) and m.num_groups == 128 for m in model.modules())
    assert model.feature_dim == 128 * 4 * 4


def test_training_learns_and_is_deterministic_for_a_seed(digits):
    def run(seed):
        torch.manual_seed(seed)
        model = dcu.create_model("mlp", in_channels=1, num_classes=10, image_size=8)
        train(model, digits.train, TrainConfig(epochs=10, batch_size=64, lr=0.05, augment=True, flip=False, crop_padding=1, seed=seed))
        return model

    a, b, c = run(0), run(0), run(1)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.state_dict()["classifier.weight"], c.state_dict()["classifier.weight"])
    assert dcu.accuracy(a, digits.test) > 0.85


def test_augment_batch_shifts_and_flips_without_changing_shape():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    gen = torch.Generator().manual_seed(0)
    out = augment_batch(x, flip=True, padding=2, generator=gen)
    assert out.shape == x.shape
    assert not torch.equal(out, x)
    same = augment_batch(x, flip=False, padding=0, generator=gen)
    assert torch.equal(same, x)


def test_training_stops_with_a_clear_error_on_a_nan_loss(digits):
    model = dcu.create_model("mlp", in_channels=1, num_classes=10, image_size=8)

    def nan_loss(m, x, y, idx):
        return m(x).sum() * float("nan")

    with pytest.raises(FloatingPointError, match="loss became nan"):
        train(model, digits.train, TrainConfig(epochs=1), loss_fn=nan_loss)


def test_cpu_micro_batches_train_to_the_whole_batch_weights(monkeypatch):
    """On a CPU, per-sample losses are trained in cache-sized micro-batches; the weights must be those of
    whole batches (up to float rounding), and batch-norm models are never split."""
    import importlib

    train_module = importlib.import_module("dcu.train")
    from dcu.data import ImageSet
    from dcu.models import create_model
    from dcu.train import TrainConfig, cpu_micro_batch, train

    torch.manual_seed(0)
    data = ImageSet(torch.randn(96, 3, 8, 8), torch.randint(0, 4, (96,)), torch.arange(96))
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, augment=True, seed=1)

    def trained(loss_fn=None):
        torch.manual_seed(0)
        net = create_model("convnet", in_channels=3, num_classes=4, image_size=8, width=16, depth=2)
        train(net, data, cfg, **({"loss_fn": loss_fn} if loss_fn else {}))
        return net

    whole = trained(lambda m, x, y, idx: torch.nn.functional.cross_entropy(m(x), y))   # not marked per_sample
    monkeypatch.setattr(train_module, "MICRO_BATCH_BYTES", 16 * 8 * 8 * 4 * 5)         # 5 images per pass
    probe = create_model("convnet", in_channels=3, num_classes=4, image_size=8, width=16, depth=2)
    assert cpu_micro_batch(probe, data.images) == 5
    split = trained()
    for a, b in zip(whole.parameters(), split.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert cpu_micro_batch(create_model("resnet18", in_channels=3, num_classes=4, image_size=8), data.images) is None


@pytest.mark.parametrize("schedule, drops", [("step", [91]), ("multistep", [91, 136])])
def test_step_schedules_cut_the_rate_tenfold_where_their_protocols_do(schedule, drops):
    from dcu.train import make_schedule

    total = 182   # one step an epoch: SalUn's 182 epochs cut at 91 and 136; the DC protocol's at half
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = make_schedule(optimizer, TrainConfig(schedule=schedule, lr=0.1), total)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        sched.step()
    cuts = [i for i in range(1, total) if rates[i] < rates[i - 1] * 0.5]
    assert cuts == drops and rates[-1] == pytest.approx(0.1 * 0.1 ** len(drops))
    with pytest.raises(ValueError, match="multistep"):
        make_schedule(optimizer, TrainConfig(schedule="cosine-ish"), total)


def test_concept_eraser_leaves_no_linear_trace_of_the_concept():
    """LEACE on features where a concept shifts the mean: after full erasure the two groups share a mean (no
    linear read-out beats a constant), half strength moves half the way, zero changes nothing."""
    from dcu.models.erase import fit_eraser

    gen = torch.Generator().manual_seed(0)
    concept = (torch.rand(2000, generator=gen) < 0.3).float()
    x = torch.randn(2000, 16, generator=gen) @ torch.randn(16, 16, generator=gen)
    x[:, :3] += concept.view(-1, 1) * torch.tensor([3.0, -2.0, 1.0])
    gap = lambda f: f[concept == 1].mean(0) - f[concept == 0].mean(0)  # noqa: E731
    full, half, none = (fit_eraser(x, concept, s) for s in (1.0, 0.5, 0.0))
    assert gap(x).norm() > 3
    assert gap(full(x)).norm() < 1e-3
    assert torch.allclose(gap(half(x)), gap(x) / 2, atol=1e-3)
    assert torch.allclose(none(x), x)
    # the least change that does it: directions the concept does not move are kept
    assert (full(x) - x).norm() / x.norm() < 0.2
    with pytest.raises(ValueError, match="strength"):
        fit_eraser(x, concept, 1.5)


def test_an_erased_model_keeps_the_protocol_and_loads_from_its_checkpoint(tmp_path, digits):
    from dcu.checkpoint import base_meta, load_checkpoint, save_checkpoint
    from dcu.models import create_model, split_model
    from dcu.models.erase import fit_eraser, with_eraser
    from dcu.train import features

    torch.manual_seed(0)
    model = create_model("convnet", in_channels=1, num_classes=10, image_size=8, width=8, depth=2)
    images = digits.train.images[:200]
    feats = features(model, images)
    erased = with_eraser(model, fit_eraser(feats, (digits.train.labels[:200] == 3).float()))
    twice = with_eraser(erased, fit_eraser(features(erased, images), (digits.train.labels[:200] == 5).float()))
    assert erased.arch_args["erase_ranks"] == [1] and twice.arch_args["erase_ranks"] == [1, 1]
    x = digits.val.images[:16]
    with torch.no_grad():
        assert not torch.allclose(erased.forward_features(x), model.forward_features(x))
        assert torch.allclose(twice(x), twice.forward_head(twice.forward_features(x)))
        trunk, tail = split_model(twice, 2)     # the erasers sit in the head stage, before the classifier
        assert torch.allclose(tail(trunk(x)), twice(x), atol=1e-5)
    path = tmp_path / "erased.pt"
    save_checkpoint(path, twice, base_meta(twice, digits, digits.train.ids))
    loaded, meta = load_checkpoint(path)
    assert meta["arch_args"]["erase_ranks"] == [1, 1]
    with torch.no_grad():
        assert torch.allclose(loaded(x), twice.eval()(x), atol=1e-6)
    with pytest.raises(ValueError, match="erase_ranks"):
        create_model("convnet", in_channels=1, num_classes=10, image_size=8, erase_ranks=[0])
