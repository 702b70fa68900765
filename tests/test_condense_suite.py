"""The condensation catalogue on digits: every method beats a random coreset of its size on fresh networks,
bucketed refreshes never see forgotten pixels, and a resumed run equals an uninterrupted one."""
import pytest
import torch

import condense
from condense.dsa import DSA
from condense.protocol import PROTOCOLS, cutmix, evaluate_condensed
from dcu.train import TrainConfig, make_schedule

# fresh ConvNet-32s, 100 epochs of the DC protocol's optimiser: seconds on digits (ConvNets on 8 px digits are
# 2 blocks deep: `fit_depth` drops the block that would pool to 1x1, where instance norm outputs a constant)
PROTOCOL = {"epochs": 100, "batch_size": 64, "model_args": {"width": 32}}

METHODS = {
    "herding": {},
    "kcenter": {},
    "dm": {"iterations": 80, "net_width": 32, "batch_real": 64},
    "dc": {"iterations": 40, "net_width": 32, "batch_real": 64},
    "dsa": {"iterations": 40, "net_width": 32, "batch_real": 64},
    "fdm": {},
    "mi": {"inverter_steps": 150},
    "idm": {"iterations": 80, "net_width": 32, "batch_real": 64, "train_steps": 2, "factor": 1},
    "ncfm": {"iterations": 60, "net_width": 32, "batch_real": 64, "num_freqs": 512, "num_models": 1,
             "pretrain_epochs": 2, "factor": 1},
}


def mean_accuracy(cset, splits):
    return evaluate_condensed(cset, splits, runs=3, protocol=PROTOCOL, dsa=False)["mean"]


@pytest.fixture(scope="module")
def random_baseline(digits):
    return mean_accuracy(condense.get_condenser("random", ipc=2).condense(digits), digits)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_beats_a_random_coreset_of_the_same_size(digits, mlp, random_baseline, name):
    cset = condense.get_condenser(name, ipc=2, **METHODS[name]).condense(digits, mlp, "hash")
    assert len(cset) == 20 and torch.equal(torch.bincount(cset.labels), torch.full((10,), 2))
    assert mean_accuracy(cset, digits) > random_baseline, name


def test_evaluation_protocol_is_named_and_repeatable(digits):
    cset = condense.get_condenser("random", ipc=3).condense(digits)
    a = evaluate_condensed(cset, digits, runs=2, protocol=PROTOCOL)
    b = evaluate_condensed(cset, digits, runs=2, protocol=PROTOCOL)
    assert a["protocol"] == "custom" and a["accuracies"] == b["accuracies"] and a["runs"] == 2
    assert 0.1 < a["mean"] < 1.0 and a["std"] >= 0
    with pytest.raises(ValueError, match="Valid values are: dc-300ep, dc-1000ep, dc-cpu, dc-cpu-w64, ncfm-4000ep"):
        evaluate_condensed(cset, digits, protocol="dc-3ep")


def test_cutmix_pastes_one_box_from_the_shuffled_batch_and_weighs_by_area():
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 32, 32).contiguous()
    for seed in range(20):
        mixed, shuffle, own = cutmix(x, torch.Generator().manual_seed(seed))
        assert sorted(shuffle.tolist()) == [0, 1, 2, 3]
        for i in range(4):
            if shuffle[i] != i:   # each pixel is the image's own or its partner's, in the stated shares
                assert (mixed[i] == x[i]).float().mean().item() == pytest.approx(own)
                assert (mixed[i] == x[shuffle[i]]).float().mean().item() == pytest.approx(1 - own)
    assert 0.0 <= own <= 1.0


def test_fifths_schedule_halves_the_rate_after_each_fifth():
    opt = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = make_schedule(opt, TrainConfig(optimizer="adamw", schedule="fifths"), total_steps=100)
    rates = []
    for _ in range(100):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[0] == rates[19] == 1e-3 and rates[20] == 5e-4 and rates[99] == pytest.approx(1e-3 / 16)


def test_ncfm_protocol_trains_with_dsa_and_cutmix_on_every_set(digits):
    cset = condense.get_condenser("random", ipc=5).condense(digits)
    spec = {**PROTOCOLS["ncfm-1000ep"], "epochs": 60, "batch_size": 25, "model_args": {"width": 32}}
    out = evaluate_condensed(cset, digits, runs=1, protocol=spec)
    assert out["dsa_augment"] is True and out["cutmix"] == 0.5   # a random coreset was not made with DSA
    assert out["mean"] > 0.5


def test_ncfm_matches_under_dsa_only_when_set_and_its_sets_are_scored_with_it(digits, mlp):
    settings = dict(METHODS["ncfm"], iterations=3, pretrain_epochs=1)
    with_dsa = condense.get_condenser("ncfm", ipc=2, **settings).condense(digits, mlp, "hash")
    without = condense.get_condenser("ncfm", ipc=2, dsa=False, **settings).condense(digits, mlp, "hash")
    assert with_dsa.config["dsa"] and not torch.equal(with_dsa.images, without.images)
    spec = {**PROTOCOL, "epochs": 2}
    assert evaluate_condensed(with_dsa, digits, runs=1, protocol=spec)["dsa_augment"] is True
    assert evaluate_condensed(without, digits, runs=1, protocol=spec)["dsa_augment"] is False


def test_dsa_applies_one_transformation_to_real_and_synthetic_batches():
    dsa = DSA()
    real, syn = torch.randn(6, 3, 16, 16), torch.randn(4, 3, 16, 16, requires_grad=True)
    for family in ("color", "crop", "cutout", "flip", "scale", "rotate"):
        params = dsa.sample(torch.Generator().manual_seed(1), family=family)
        both = dsa(torch.cat([real, syn]), params)
        assert torch.allclose(both[:6], dsa(real, params), atol=1e-5) and both.shape == (10, 3, 16, 16)
        out = dsa(syn, params)
        out.sum().backward()
        assert syn.grad is not None and torch.isfinite(syn.grad).all()
        syn.grad = None
    flipped = dsa(real, {"family": "flip", "flip": torch.tensor([True])})
    assert torch.equal(flipped, real.flip(3))


@pytest.mark.parametrize("name", ["dm", "dc", "ncfm"])
def test_resumed_condensation_equals_an_uninterrupted_run(digits, tmp_path, name):
    settings = {"ipc": 1, "iterations": 6, "net_width": 16, "batch_real": 32}
    if name == "dc":
        settings["inner_loop"] = 2
    if name == "ncfm":
        settings.update(num_models=1, pretrain_epochs=1, num_freqs=64)
    whole = condense.get_condenser(name, **settings).condense(digits)

    class Interrupted(Exception):
        pass

    first = condense.get_condenser(name, **settings).resumable(tmp_path / "progress.pt", every=2)
    save = first.save_progress

    def save_then_stop(tag, iteration, total, **state):
        save(tag, iteration, total, **state)
        if iteration == 4:
            raise Interrupted

    first.save_progress = save_then_stop
    with pytest.raises(Interrupted):
        first.condense(digits)
    resumed = condense.get_condenser(name, **settings).resumable(tmp_path / "progress.pt", every=2).condense(digits)
    assert torch.equal(resumed.images, whole.images)
    with pytest.raises(Exception, match="checkpoint of another run"):
        condense.get_condenser(name, **{**settings, "iterations": 7}).resumable(tmp_path / "progress.pt").condense(digits)


@pytest.mark.parametrize("name", ["dc", "herding", "kcenter", "idm", "mi", "ncfm"])
def test_refresh_never_sees_forgotten_pixels(digits, mlp, name):
    cset = condense.get_condenser(name, ipc=2, **METHODS[name]).condense(digits, mlp, "hash")
    forget_ids = torch.cat([cset.members[cset.member_bucket == cset.image_bucket[0]][:3],
                            digits.train.ids[digits.train.labels == 4][:3]])
    retain = digits.train.without(forget_ids)
    forget = digits.train.subset(forget_ids)
    refreshed = cset.refresh(forget_ids, retain, forget)
    # re-made from the remaining members alone: the same set comes out when the forgotten pixels are unknown
    blind = cset.refresh(forget_ids, retain, None)
    assert torch.allclose(refreshed.images, blind.images, atol=1e-4)
    assert not torch.isin(refreshed.members, forget_ids).any()
    if name == "mi":   # one shared inverter: every image is re-made
        assert refreshed.history[-1]["buckets_remade"] == len(refreshed)
        return
    untouched = ~torch.isin(cset.image_bucket, cset.buckets_with(forget_ids))
    kept = torch.isin(refreshed.image_bucket, cset.image_bucket[untouched])
    assert torch.equal(refreshed.images[kept], cset.images[untouched])


def test_chunked_passes_give_the_one_pass_numbers():
    """dc and dm split the real batch into cache-sized passes on a CPU; the gradient and the embeddings
    must be those of a single pass (ConvNet has no batch statistics)."""
    from condense.base import cpu_chunk
    from condense.dc import mean_gradient
    from dcu.models import create_model

    torch.manual_seed(0)
    net = create_model("convnet", in_channels=3, num_classes=4, image_size=8, width=16, depth=2)
    params = list(net.parameters())
    real = torch.randn(23, 3, 8, 8)
    whole = torch.autograd.grad(torch.nn.functional.cross_entropy(net(real), torch.full((23,), 2)), params)
    for chunk in (1, 5, 23):
        for a, b in zip(mean_gradient(net, params, real, 2, chunk), whole):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(torch.cat([net.forward_features(p) for p in real.split(5)]),
                                   net.forward_features(real), rtol=1e-5, atol=1e-6)
    assert cpu_chunk(128, 32) == 16 and cpu_chunk(128, 8) == 256
