import os
import tempfile

import pytest
import torch

os.environ.setdefault("DCU_QUIET", "1")
# one thread: results that do not depend on the machine's core count (float sums run in another order with
# two threads, and test_dcu_mirror's margin, measured single-threaded, does not hold there), and subprocess
# tests (torchrun, the examples) that do not oversubscribe two cores
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DCU_CACHE", tempfile.mkdtemp(prefix="dcu-cache-"))   # the tests never write ~/.cache

import dcu  # noqa: E402
from dcu.data import ImageSet  # noqa: E402
from dcu.train import TrainConfig, train  # noqa: E402

SMOKE_TRAIN = TrainConfig(epochs=30, batch_size=64, lr=0.05, schedule="onecycle", weight_decay=5e-4)


@pytest.fixture(scope="session")
def digits():
    """The digits dataset with a 10% held-out validation split (ids kept)."""
    return dcu.data.load("digits").holdout(0.1, seed=0)


@pytest.fixture(scope="session")
def noisy_digits(digits):
    """Digits whose training labels are 25% wrong: a model must memorise those, so forgetting is visible."""
    gen = torch.Generator().manual_seed(0)

    def corrupt(part):
        labels = part.labels.clone()
        flip = torch.rand(len(labels), generator=gen) < 0.25
        labels[flip] = (labels[flip] + torch.randint(1, 10, (int(flip.sum()),), generator=gen)) % 10
        return ImageSet(part.images, labels, part.ids)

    from dataclasses import replace

    return replace(digits, train=corrupt(digits.train), val=corrupt(digits.val))


def train_mlp(splits, seed=0, epochs=30, hidden=(256, 128)):
    torch.manual_seed(seed)
    model = dcu.create_model("mlp", in_channels=1, num_classes=10, image_size=8, hidden=hidden)
    train(model, splits.train, TrainConfig(**{**SMOKE_TRAIN.__dict__, "epochs": epochs, "seed": seed}))
    return model


@pytest.fixture(scope="session")
def mlp(digits):
    return train_mlp(digits)
