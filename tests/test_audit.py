"""The many-model, per-example audit: the challenge's ε and forgetting score, U-LiRA and KLoM from model
ensembles, and the ordering that makes them meaningful on digits."""
import json
import math
from dataclasses import asdict

import pytest
import torch
from conftest import SMOKE_TRAIN, train_mlp

import dcu
from dcu.checkpoint import base_meta
from dcu.forget import random_ids
from dcu.workflows.audit import EnsembleStore, fill, scorecard
from dcu.workflows.cli import main
from inversion_attacks.ensemble import binned_kl, epsilon_points, epsilons, example_epsilon, loss_lr_per_model, ulira


def test_epsilon_is_small_for_one_distribution_and_capped_for_separated_ones():
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(64, 40, generator=gen, dtype=torch.float64) for _ in range(2))
    same, shifted = epsilons(a, b), epsilons(a, b + 10)
    # the max over many thresholds is biased up even for one distribution (why the ceiling is shown)
    assert float(same.median()) < 2.0
    assert torch.all(shifted == 50.0)                         # perfect separation: the cap
    assert float(epsilons(a, b + 1).median()) > float(same.median()) + 1.0
    # a point mass against a spread sample is the "peaky" case: the cap as well
    assert example_epsilon(torch.full((16,), 2.0, dtype=torch.float64), a[:16, 0]) == 50.0


def test_epsilon_points_follow_the_reference_bins():
    eps = torch.tensor([0.3, 0.7, 1.2, 1.9, 2.0, 50.0], dtype=torch.float64)
    # 8 models: bins of 0.5 up to ceil(ln 7) = 2, worth 1, 1/2, 1/4, 1/8, then nothing
    assert epsilon_points(eps, 8).tolist() == [1.0, 0.5, 0.25, 0.125, 0.0, 0.0]
    assert epsilon_points(eps, 2).tolist() == [0.0] * 6        # ceil(ln 1) = 0: no bin at all
    assert math.ceil(math.log(127)) == 5 and epsilon_points(torch.tensor([4.9]), 128).item() == 0.5 ** 9


def test_klom_and_ulira_see_a_shift_and_not_noise():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(200, generator=gen)
    assert binned_kl(a, a) == pytest.approx(0.0, abs=1e-9)
    assert binned_kl(a, a + 3) > 1.0
    labels = torch.zeros(30, dtype=torch.long)
    base = torch.randn(16, 30, 2, generator=gen)
    other = torch.randn(16, 30, 2, generator=gen)
    assert abs(ulira(base, other, labels).value - 0.5) < 0.1
    moved = other.clone()
    moved[..., 0] += 6   # the unlearned ensemble is far more confident in the true class
    assert ulira(moved, other, labels).value > 0.95
    # loss_lr per model: members and non-members drawn alike are at chance, a confident forget set is found
    non_members = torch.randn(16, 40, 2, generator=gen)
    assert abs(loss_lr_per_model(base, labels, non_members, torch.zeros(40, dtype=torch.long)).mean() - 0.5) < 0.1
    assert loss_lr_per_model(moved, labels, non_members, torch.zeros(40, dtype=torch.long)).min() > 0.75


@pytest.fixture(scope="module")
def audited(noisy_digits, tmp_path_factory):
    original = train_mlp(noisy_digits)
    meta = {**base_meta(original, noisy_digits, noisy_digits.train.ids), "hash": "digits-noisy-0",
            "train_config": asdict(SMOKE_TRAIN)}
    store = EnsembleStore.create(tmp_path_factory.mktemp("ensembles"), noisy_digits, meta,
                                 random_ids(noisy_digits.train.ids, 0.1, 0))
    fill(store, noisy_digits, original, meta, methods=["finetune"], models=8, retrains=16,
         settings={"finetune": {"epochs": 2, "lr": 0.01}})
    return store, noisy_digits, meta


def test_scores_order_retrain_above_a_weak_finetune_above_doing_nothing(audited):
    store, splits, _ = audited
    card = scorecard(store, splits, methods=["finetune"])
    rows = card["rows"]
    ceiling, weak, nothing = rows["ceiling (retrain vs retrain)"], rows["finetune"], rows["original (no unlearning)"]
    assert card["models_per_ensemble"] == 8 and ceiling["models"] == weak["models"] == 8
    # the challenge's score: retrain near its ceiling, the untouched original at 0, a weak fine-tune between
    assert ceiling["forgetting_quality"] > weak["forgetting_quality"] > nothing["forgetting_quality"]
    assert nothing["forgetting_quality"] == 0.0
    assert ceiling["forgetting_quality"] > 2 * weak["forgetting_quality"]
    # U-LiRA: retrained halves are indistinguishable, the others are told apart
    assert abs(ceiling["ulira"]["auc"] - 0.5) < 0.1
    assert nothing["ulira"]["auc"] > weak["ulira"]["auc"] > 0.75
    assert nothing["klom"]["forget"] > ceiling["klom"]["forget"]
    assert len(weak["epsilons"]) == len(store.forget_ids)
    # copies of one model have no spread at all, and every ε at the cap (the reference's "peaky" rule)
    assert nothing["seed_spread"] == 0.0 and nothing["epsilon_capped"] == len(store.forget_ids)
    assert ceiling["seed_spread"] > 0
    # the probes: the noisy labels the original memorised come back faster than retrain ever learns them
    assert nothing["relearn_forget_acc"] > ceiling["relearn_forget_acc"] + 0.05
    assert nothing["probe_forget_acc"] >= ceiling["probe_forget_acc"] - 0.05
    # fine-tuning on retain data alone leaves the memorised labels in the original, never in retrained models
    assert nothing["relearn_retain_forget_acc"] > ceiling["relearn_retain_forget_acc"] + 0.05
    # the population loss attack, from the stored logits. On this toy it is retraining that the loss tells apart
    # from unseen images (only models that never saw the flipped labels find them costly), so "0.5" is not the
    # target: the reference is retraining's own value, which is why the per-example scores compare ensembles
    assert ceiling["loss_lr"] > nothing["loss_lr"] + 0.05


def test_the_store_resumes_and_refuses_another_request(audited, tmp_path):
    store, splits, meta = audited
    before = sorted(p.name for p in store.path.iterdir())
    assert fill(store, splits, None, meta, methods=["finetune"], models=8, retrains=16) == []
    assert sorted(p.name for p in store.path.iterdir()) == before
    with pytest.raises(ValueError, match="another original or request"):
        EnsembleStore.create(store.path, splits, meta, random_ids(splits.train.ids, 0.1, 1))


def test_a_label_that_extends_another_is_an_ensemble_of_its_own(audited):
    """``dcu@ref`` and ``dcu@ref-t4`` share a file prefix; neither ensemble may take the other's models."""
    store, _, _ = audited
    seeds = store.seeds("unlearn", "finetune")
    copies = [store.file("unlearn", "finetune-deep", s) for s in seeds[:2]]
    for seed, copy in zip(seeds, copies):
        copy.write_bytes(store.file("unlearn", "finetune", seed).read_bytes())
    try:
        assert store.seeds("unlearn", "finetune") == seeds and store.seeds("unlearn", "finetune-deep") == seeds[:2]
        assert store.bank("unlearn", "finetune")["seeds"] == seeds
    finally:
        for copy in copies:
            copy.unlink()


def test_dcu_audit_builds_in_shards_then_writes_the_scorecard(tmp_path, capsys):
    original = tmp_path / "original.pt"
    assert main(["train", "--dataset", "digits", "--model", "mlp", "--epochs", "10", "--out", str(original),
                 "--quiet"]) == 0
    common = ["audit", "--dataset", "digits", "--model", str(original), "--forget-frac", "0.05", "--methods",
              "finetune,dcu", "--models", "3", "--set", "finetune.epochs=1", "--out", str(tmp_path / "card.json"),
              "--quiet"]
    assert main([*common, "--shard", "0/2"]) == 0
    assert not (tmp_path / "card.json").exists()                  # the other shard is still missing
    assert main([*common, "--shard", "1/2", "--plots"]) == 0
    card = json.loads((tmp_path / "card.json").read_text())
    assert set(card["rows"]) == {"ceiling (retrain vs retrain)", "finetune", "dcu", "original (no unlearning)"}
    assert card["models_per_ensemble"] == 3 and card["versions"]["torch"] and (tmp_path / "card.png").exists()
    assert (tmp_path / "card-ensembles" / "condensed.pt").exists()  # dcu's fdm set, made once in the store
    assert main(["audit", "--dataset", "digits", "--model", str(original), "--forget-frac", "0.05",
                 "--out", str(original), "--quiet"]) == 2
    assert "same file" in capsys.readouterr().err


def test_memorised_and_subpopulation_forget_sets(noisy_digits, tmp_path):
    """High-memorisation ids are the ones shadows get right only when they trained on them (here: the
    flipped labels); a sub-population is one class's nearest neighbours of an anchor."""
    from dcu.workflows.audit import memorisation, memorised_request, subpopulation_request
    from inversion_attacks.shadow import ShadowStore

    original = train_mlp(noisy_digits, epochs=30)
    meta = {**base_meta(original, noisy_digits, noisy_digits.train.ids), "train_config": asdict(SMOKE_TRAIN)}
    shadows = ShadowStore.create(tmp_path / "shadows", noisy_digits, meta, count=8)
    shadows.fill(noisy_digits)
    ids, score = memorisation(shadows, noisy_digits)
    clean = dcu.data.load("digits").holdout(0.1, seed=0)
    flipped = noisy_digits.train.labels != clean.train.labels
    flipped_ids = noisy_digits.train.ids[flipped]
    high = memorised_request(shadows, noisy_digits, 100)
    low = memorised_request(shadows, noisy_digits, 100, high=False)
    base = float(flipped.float().mean())                                # about a quarter of the labels
    assert float(torch.isin(high, flipped_ids).float().mean()) > 1.5 * base   # label noise must be memorised
    assert float(torch.isin(low, flipped_ids).float().mean()) < base   # (noise no shadow learns scores 0 too)
    assert float(score[torch.isin(ids, high)].min()) > float(score[torch.isin(ids, low)].max())
    group = subpopulation_request(original, noisy_digits, 20, seed=3)
    assert len(group) == 20 and len(set(noisy_digits.train.subset(group).labels.tolist())) == 1


def test_dcu_audit_scores_your_own_unlearned_checkpoints(tmp_path, capsys):
    """Checkpoints a user unlearned elsewhere (here: with `dcu forget`, three seeds) are one more row; the request
    comes from their ledger, and a checkpoint of another original or another request is refused."""
    original, other = tmp_path / "original.pt", tmp_path / "other.pt"
    for path, seed in ((original, "0"), (other, "1")):
        assert main(["train", "--dataset", "digits", "--model", "mlp", "--epochs", "10", "--seed", seed,
                     "--out", str(path), "--quiet"]) == 0
    ids = tmp_path / "forget.txt"
    forgotten = random_ids(dcu.data.load("digits").holdout(0.1).train.ids, 0.05, 0)
    ids.write_text("".join(f"{int(i)}\n" for i in forgotten))
    yours = []
    for seed in ("1", "2", "3"):
        yours.append(tmp_path / f"ft{seed}.pt")
        assert main(["forget", "--dataset", "digits", "--model", str(original), "--ids", str(ids), "--method",
                     "finetune", "--set", "epochs=1", "--seed", seed, "--out", str(yours[-1]), "--quiet"]) == 0
    out = tmp_path / "card.json"
    assert main(["audit", "--dataset", "digits", "--model", str(original), "--unlearned", *map(str, yours),
                 "--label", "my_ft", "--models", "3", "--out", str(out), "--quiet"]) == 0
    card = json.loads(out.read_text())
    assert set(card["rows"]) == {"ceiling (retrain vs retrain)", "my_ft", "original (no unlearning)"}
    assert card["rows"]["my_ft"]["models"] == 3 and card["forget"] == len(forgotten)
    assert card["yours"]["checkpoints"] == [str(p) for p in yours]
    assert card["rows"]["my_ft"]["ulira"]["auc"] > card["rows"]["ceiling (retrain vs retrain)"]["ulira"]["auc"]
    # another original's checkpoint, another request, another model under the same name: refused
    assert main(["forget", "--dataset", "digits", "--model", str(other), "--ids", str(ids), "--method", "finetune",
                 "--set", "epochs=1", "--out", str(tmp_path / "foreign.pt"), "--quiet"]) == 0
    assert main(["audit", "--dataset", "digits", "--model", str(original), "--unlearned", str(tmp_path / "foreign.pt"),
                 "--out", str(tmp_path / "x.json"), "--quiet"]) == 2
    assert "not from --model" in capsys.readouterr().err
    assert main(["audit", "--dataset", "digits", "--model", str(original), "--unlearned", str(yours[0]),
                 "--forget-frac", "0.05", "--forget-seed", "3", "--out", str(tmp_path / "y.json"), "--quiet"]) == 2
    assert "not the" in capsys.readouterr().err
    assert main(["audit", "--dataset", "digits", "--model", str(original), "--unlearned", str(yours[1]), *map(str, yours[1:]),
                 "--label", "my_ft", "--models", "3", "--store", str(tmp_path / "card-ensembles"), "--out", str(tmp_path / "z.json"),
                 "--quiet"]) == 2
    assert "already holds another model" in capsys.readouterr().err
