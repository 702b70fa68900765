"""Model inversion on digits, with numbers: inversions of a trained model are recognisable to an independent
classifier, those of an untrained model are not; the scores behave on known answers."""
import pytest
import torch
from conftest import SMOKE_TRAIN

import dcu
import unlearn
from dcu.train import TrainConfig, train
from inversion_attacks.inversion import (
    CondensiveConfig,
    InversionConfig,
    condensive_inversion,
    gradient_inversion,
    inversion_scores,
    unlearning_inversion,
)
from inversion_attacks.mi_common import ssim


@pytest.fixture(scope="module")
def evaluator(digits):
    """An independent classifier (another architecture and seed) for scoring inversions."""
    torch.manual_seed(7)
    net = dcu.create_model("convnet", in_channels=1, num_classes=10, image_size=8, width=32, depth=2)
    train(net, digits.train, TrainConfig(epochs=30, batch_size=64, lr=0.05, seed=7))
    return net


def test_ssim_and_scores_on_known_answers(digits, evaluator):
    x = digits.test.images[:4]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert abs(float(ssim(x, x, 2.0)) - 1.0) < 1e-5 and float(ssim(x, noise, 2.0)) < 0.2
    real = dcu.data.ImageSet(digits.test.images[:50], digits.test.labels[:50])
    scores = inversion_scores(real, evaluator, real)
    assert scores["evaluator_accuracy"] > 0.9 and scores["nearest_feature_distance"] < 1e-4
    assert scores["nearest_ssim"] > 0.999 and scores["nearest_psnr"] > 60


def test_gradient_inversion_of_a_trained_model_is_recognisable(digits, mlp, evaluator):
    cfg = InversionConfig(per_class=2, steps=150)
    trained = inversion_scores(gradient_inversion(mlp, (1, 8, 8), cfg), evaluator, digits.val)
    untrained = dcu.create_model("mlp", in_channels=1, num_classes=10, image_size=8)
    baseline = inversion_scores(gradient_inversion(untrained, (1, 8, 8), cfg), evaluator, digits.val)
    assert trained["evaluator_accuracy"] >= 0.5 and trained["evaluator_accuracy"] > baseline["evaluator_accuracy"] + 0.2


def test_condensive_inversion_recovers_class_prototypes(digits, mlp, evaluator):
    inverted = condensive_inversion(mlp, digits.val, CondensiveConfig(steps=300))
    assert len(inverted) == 10 and inverted.images.shape[1:] == (1, 8, 8)
    assert inversion_scores(inverted, evaluator, digits.val)["evaluator_accuracy"] >= 0.5


def test_unlearning_inversion_points_at_the_forgotten_class(digits, mlp, evaluator):
    forget_ids = digits.train.ids[digits.train.labels == 3]
    forget, retain = digits.train.subset(forget_ids), digits.train.without(forget_ids)
    result = unlearn.get_unlearner("gradient_ascent", train_config=SMOKE_TRAIN, epochs=1, lr=0.01).unlearn(mlp, retain, forget)
    unlearned = result.model
    inverted = unlearning_inversion(mlp, unlearned, (1, 8, 8), InversionConfig(per_class=4, steps=150),
                                    classes=torch.tensor([3]))
    scores = inversion_scores(inverted, evaluator, digits.val, forget=forget, unseen=digits.val)
    assert scores["images"] == 4 and scores["forget_closeness_gap"] is not None
    with pytest.raises(ValueError, match="identical weights"):
        unlearning_inversion(mlp, mlp, (1, 8, 8))
