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
