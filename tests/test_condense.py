import pytest
import torch

import condense
import dcu
from dcu.forget import random_ids
from dcu.train import TrainConfig, accuracy, train


def fresh_net_accuracy(cset, splits, runs=3):
    accs = []
    for seed in range(runs):
        torch.manual_seed(seed)
        net = dcu.create_model("convnet", in_channels=1, num_classes=10, image_size=8, width=32)
        train(net, cset.as_imageset(), TrainConfig(epochs=100, batch_size=64, lr=0.01, schedule="cosine", seed=seed))
        accs.append(accuracy(net, splits.test))
    return sum(accs) / runs


@pytest.fixture(scope="module")
def fdm_set(digits, mlp):
    return condense.get_condenser("fdm", ipc=5).condense(digits, mlp, "hash")


def test_fdm_beats_a_random_coreset_of_the_same_size(digits, mlp, fdm_set):
    rand = condense.get_condenser("random", ipc=5).condense(digits)
    assert len(rand) == len(fdm_set) == 50
    assert fresh_net_accuracy(fdm_set, digits) > fresh_net_accuracy(rand, digits) + 0.02


def test_dm_beats_a_random_coreset_of_the_same_size(digits):
    dm = condense.get_condenser("dm", ipc=2, iterations=60, net_width=32, batch_real=64, dsa=False).condense(digits)
    rand = condense.get_condenser("random", ipc=2).condense(digits)
    assert fresh_net_accuracy(dm, digits) > fresh_net_accuracy(rand, digits)


def test_fdm_images_are_convex_combinations_of_their_bucket(digits, fdm_set):
    for bucket in (0, 17, 49):
        members = digits.train.subset(fdm_set.bucket_members(bucket)).images
        image = fdm_set.images[fdm_set.image_bucket == bucket][0]
        assert (image >= members.min(0).values - 1e-5).all() and (image <= members.max(0).values + 1e-5).all()
    assert torch.equal(torch.sort(fdm_set.members).values, torch.sort(digits.train.ids).values)


def test_refresh_leaves_no_image_built_from_a_forget_id(digits, fdm_set):
    forget_ids = random_ids(digits.train.ids, 0.1, 0)
    retain, forget = digits.train.without(forget_ids), digits.train.subset(forget_ids)
    touched = fdm_set.buckets_with(forget_ids)
    refreshed = fdm_set.refresh(forget_ids, retain, forget)
    assert not torch.isin(refreshed.members, forget_ids).any()
    assert len(fdm_set.members) == len(digits.train)  # the original set is left as it was
    # untouched buckets keep their image; touched ones are re-made
    for bucket in range(50):
        before = fdm_set.images[fdm_set.image_bucket == bucket]
        after = refreshed.images[refreshed.image_bucket == bucket]
        if bucket in touched:
            assert not torch.allclose(before, after)
        else:
            assert torch.equal(before, after)
    # subtracting the forgotten members' features gives the same images as re-embedding the remaining ones
    recomputed = fdm_set.refresh(forget_ids, retain, forget=None)
    assert torch.allclose(refreshed.images, recomputed.images, atol=1e-4)
    assert refreshed.history[-1]["buckets_remade"] == len(touched)


def test_refresh_does_not_see_forgotten_pixels(digits, fdm_set):
    """Re-made images must be the same whatever the forgotten images looked like."""
    forget_ids = random_ids(digits.train.ids, 0.1, 1)
    retain = digits.train.without(forget_ids)
    a = fdm_set.refresh(forget_ids, retain, forget=None)
    scrambled = dcu.data.ImageSet(digits.train.images.clone(), digits.train.labels, digits.train.ids)
    scrambled.images[scrambled.positions(forget_ids)] = torch.randn(len(forget_ids), 1, 8, 8)
    b = fdm_set.refresh(forget_ids, scrambled.without(forget_ids), forget=None)
    assert torch.equal(a.images, b.images)


def test_refresh_drops_buckets_left_empty(digits):
    rand = condense.get_condenser("random", ipc=3).condense(digits)
    forget_ids = rand.members[:4]
    refreshed = rand.refresh(forget_ids, digits.train.without(forget_ids))
    assert len(refreshed) == len(rand) - 4 and not torch.isin(refreshed.members, forget_ids).any()
    assert refreshed.history[-1]["buckets_dropped"] == 4


def test_dm_refresh_remakes_the_touched_classes_from_remaining_members(digits):
    dm = condense.get_condenser("dm", ipc=1, iterations=5, net_width=16, batch_real=32).condense(digits)
    forget_ids = digits.train.ids[digits.train.labels == 3][:5]
    refreshed = dm.refresh(forget_ids, digits.train.without(forget_ids))
    changed = ~torch.isclose(refreshed.images, dm.images).flatten(1).all(1)
    assert changed.tolist() == (dm.labels == 3).tolist()


def test_condensed_set_round_trips_and_checks_its_dataset(tmp_path, digits, fdm_set):
    path = tmp_path / "c.pt"
    fdm_set.save(path)
    loaded = condense.load_condensed(path)
    assert torch.equal(loaded.images, fdm_set.images) and loaded.method == "fdm"
    loaded.check_fits(digits)
    other = dcu.data.load("digits").holdout(0.2)
    loaded.check_fits(other)  # same id space
    from dataclasses import replace

    with pytest.raises(ValueError, match="made from digits with 1437"):
        loaded.check_fits(replace(other, name="mnist"))


def test_condensers_validate_their_settings(digits):
    with pytest.raises(ValueError, match="Unknown setting"):
        condense.get_condenser("fdm", ipc=5, iterations=3)
    with pytest.raises(ValueError, match="needs a trained model"):
        condense.get_condenser("fdm", ipc=5).condense(digits)
    with pytest.raises(ValueError, match="has only"):
        condense.get_condenser("random", ipc=1000).condense(digits)


def test_ncfm_loss_is_the_characteristic_function_discrepancy():
    """The amplitude and phase terms equal |phi_r - phi_s|^2 split the reference's way, per class."""
    from condense.ncfm import cf_loss

    gen = torch.Generator().manual_seed(0)
    real, syn = torch.randn(12, 5, generator=gen), torch.randn(6, 5, generator=gen)
    real_group, syn_group = torch.tensor([0] * 7 + [1] * 5), torch.tensor([0, 1, 0, 1, 1, 0])
    t = torch.randn(9, 5, generator=gen)
    expected = 0.0
    for g in (0, 1):
        phi_r = torch.exp(1j * (real[real_group == g] @ t.T)).mean(0)
        phi_s = torch.exp(1j * (syn[syn_group == g] @ t.T)).mean(0)
        # with alpha = beta = 1 the two terms add up to |phi_r - phi_s|^2
        expected += (phi_r - phi_s).abs().mean()
    got = cf_loss(real, syn, real_group, syn_group, 2, t, 1.0, 1.0)
    assert torch.allclose(got, expected.float(), atol=1e-5)
    same = cf_loss(real, real, real_group, real_group, 2, t, 0.5, 0.5)
    assert float(same) < 1e-4 < float(cf_loss(real, real + 1.0, real_group, real_group, 2, t, 0.5, 0.5))


def test_ncfm_multi_formation_tiles_real_images_and_decodes_them_to_full_size():
    from condense.ncfm import decode, encode_init

    shades = torch.arange(8).float().view(8, 1, 1, 1).expand(8, 3, 32, 32) / 8   # 8 flat images
    stored = encode_init(shades, factor=2, count=2)                                # 2 stored images of 4 cells
    assert stored.shape == (2, 3, 32, 32)
    assert stored[0, 0, 0, 0] == shades[0, 0, 0, 0] and stored[0, 0, 0, 31] == shades[2, 0, 0, 0]
    assert stored[1, 0, 31, 0] == shades[5, 0, 0, 0] and stored[1, 0, 31, 31] == shades[7, 0, 0, 0]
    decoded = decode(stored, 2)
    assert decoded.shape == (8, 3, 32, 32)
    assert torch.allclose(decoded, shades)   # cell k of every stored image, in real image k's order
    assert torch.equal(decode(stored, 1), stored)


def test_ncfm_set_trains_on_factor_squared_images_per_stored_one(digits):
    cset = condense.get_condenser("ncfm", ipc=2, iterations=40, net_width=16, batch_real=32, num_freqs=64,
                                  num_models=1, pretrain_epochs=1).condense(digits)
    assert len(cset) == 80 and torch.equal(torch.bincount(cset.labels), torch.full((10,), 8))
    assert cset.state["stored"].shape == (20, 1, 8, 8)
    history = cset.state["loss_history"]
    assert sum(history[-10:]) < 0.9 * sum(history[:10])   # the matching loss falls
    low = (0 - torch.tensor(digits.mean)) / torch.tensor(digits.std)
    assert (cset.images >= low.view(1, -1, 1, 1) - 1e-5).all()   # pixels stay in [0, 1]
    forget_ids = digits.train.ids[digits.train.labels == 3][:4]
    refreshed = cset.refresh(forget_ids, digits.train.without(forget_ids))
    changed = (refreshed.images != cset.images).flatten(1).any(1)
    assert torch.equal(changed, cset.labels == 3)   # only the touched class is re-made


def test_ncfm_class_steps_step_once_per_class_and_loss_with_that_class_rows():
    """The reference's stepping: matching's gradient class by class, then calibration's, each step seeing only
    its class's rows; with plain SGD the steps add up to one step on the summed gradient."""
    from condense.ncfm import NCFM

    labels = torch.tensor([0, 0, 1, 2, 2])
    start = torch.randn(5, 1, 2, 2)
    pixels = start.clone().requires_grad_(True)
    weights = torch.randn(5, 1, 2, 2)
    losses = [(weights * pixels).sum(), (pixels**2).sum()]
    seen = []

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            seen.append((pixels.grad != 0).flatten(1).any(1).nonzero().flatten().tolist())
            return super().step(closure)

    NCFM._class_steps(pixels, Spy([pixels], lr=0.1), losses, labels)
    assert seen == [[0, 1], [2], [3, 4]] * 2
    assert torch.allclose(pixels.detach(), start - 0.1 * (weights + 2 * start), atol=1e-6)


def test_bucketed_ncfm_refresh_re_makes_only_the_touched_buckets(digits):
    cset = condense.get_condenser("ncfm", ipc=3, iterations=6, net_width=16, batch_real=48, num_freqs=64,
                                  num_models=1, pretrain_epochs=1, buckets=True).condense(digits)
    assert len(cset) == 120 and torch.equal(torch.unique(cset.image_bucket), torch.arange(30))
    # a bucket's members are of its image's class
    member_class = digits.train.labels[digits.train.positions(cset.members)]
    assert torch.equal(member_class, cset.member_bucket // 3)
    assert torch.equal(cset.labels, cset.image_bucket // 3)
    forget_ids = cset.bucket_members(7)[:2]
    retain = digits.train.without(forget_ids)
    refreshed = cset.refresh(forget_ids, retain, digits.train.subset(forget_ids))
    changed = (refreshed.images != cset.images).flatten(1).any(1)
    assert torch.equal(changed, cset.image_bucket == 7)
    blind = cset.refresh(forget_ids, retain, None)   # made from the remaining members alone
    assert torch.equal(blind.images, refreshed.images)


def test_idm_queue_networks_learn_and_regularise_the_synthetic_images(digits):
    """The queue's networks train on real data as condensation goes, and the class-aware term (weighted by their
    accuracy) pulls the synthetic images towards their labels."""
    from condense.idm import IDM

    condenser = IDM(ipc=2, iterations=30, net_width=16, batch_real=32, train_steps=3, new_net_every=10, factor=2)
    trained = []
    original = condenser._train_member

    def spy(member, *args):
        original(member, *args)
        trained.append(member["accuracy"])

    condenser._train_member = spy
    cset = condenser.condense(digits)
    assert len(cset) == 80 and torch.equal(torch.bincount(cset.labels), torch.full((10,), 8))
    assert len(trained) == 60 and max(trained[-10:]) > 50   # networks reach well above chance (10%) on digits
    without = IDM(ipc=2, iterations=30, net_width=16, batch_real=32, train_steps=3, new_net_every=10, factor=2,
                  ce_weight=0.0).condense(digits)
    judge = dcu.create_model("convnet", in_channels=1, num_classes=10, image_size=8, width=32)
    train(judge, digits.train, TrainConfig(epochs=20, batch_size=64, lr=0.05, seed=0))
    assert accuracy(judge, cset.as_imageset()) > accuracy(judge, without.as_imageset())
