"""The job the demo, benchmarks and examples share, in its three scenarios (smoke preset: digits + MLP)."""
from dataclasses import replace

import pytest
import torch
from conftest import train_mlp

from dcu.workflows.pipeline import compare, forget_requests, table


def test_class_wise_forgetting_removes_the_class_and_keeps_the_rest():
    result = compare("smoke", seed=0, scenario="class", methods=("retrain", "dcu"))
    retrain, dcu_row = result["methods"]["retrain"], result["methods"]["dcu"]
    assert result["original"]["forget_acc"] > 0.95
    assert retrain["forget_acc"] < 0.05 and dcu_row["forget_acc"] < 0.05
    assert dcu_row["test_forget_class_acc"] < 0.1
    assert dcu_row["retain_acc"] > retrain["retain_acc"] - 0.02 and dcu_row["test_acc"] > retrain["test_acc"] - 0.03
    assert "| dcu |" in table(result)


def test_sequential_requests_chain_models_and_condensed_sets():
    result = compare("smoke", seed=1, scenario="sequential", methods=("retrain", "dcu"))
    dcu_row = result["methods"]["dcu"]
    assert result["requests"] == 5 and len(dcu_row["stats"]) == 5
    images = [s["condensed_images"] for s in dcu_row["stats"]]
    assert images == sorted(images, reverse=True)  # buckets only ever lose members
    assert abs(dcu_row["forget_acc"] - result["methods"]["retrain"]["forget_acc"]) < 0.05


def test_no_method_starts_after_the_deadline():
    import time

    calls = []
    result = compare("smoke", seed=0, methods=("retrain", "finetune"), deadline=time.perf_counter() + 3600,
                     on_update=lambda r: calls.append(list(r["methods"])))
    assert list(result["methods"]) == ["retrain", "finetune"] and "skipped" not in result
    late = compare("smoke", seed=0, methods=("retrain", "finetune"), deadline=time.perf_counter())
    assert late["methods"] == {} and late["skipped"] == ["retrain", "finetune"] and "forget_acc" in late["original"]
    assert calls[-1] == ["retrain", "finetune"]


def test_labelled_rows_keep_their_settings_and_condensed_rows_train_on_the_condensed_set():
    result = compare("smoke", seed=0, methods=("retrain", "finetune", "finetune@syn", "dcu", "dcu@head"),
                     method_overrides={"finetune@syn": {"epochs": 3}, "dcu@head": {"tail_stages": 1}},
                     condensed_for=("finetune@syn",))
    rows = result["methods"]
    assert rows["dcu@head"]["config"]["tail_stages"] == 1 and rows["dcu"]["config"]["tail_stages"] == 2
    assert rows["finetune@syn"]["config"]["epochs"] == 3 and rows["finetune"]["config"]["epochs"] == 5
    # the refreshed condensed set (ipc 10: 100 images) stood for the ~1,450 retained ones
    assert rows["finetune@syn"]["stats"]["condensed_images"] == 100 and "condensed_images" not in rows["finetune"]["stats"]
    assert rows["finetune@syn"]["retain_data"] == "condensed" and "retain_data" not in rows["finetune"]
    with pytest.raises(ValueError, match="'salun', which is not among"):
        compare("smoke", seed=0, methods=("retrain",), condensed_for=("salun",))


def test_forget_requests_are_disjoint_and_reproducible(digits):
    a = forget_requests(digits, "sequential", 3)
    b = forget_requests(digits, "sequential", 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    joined = torch.cat(a)
    assert len(torch.unique(joined)) == len(joined) and torch.isin(joined, digits.train.ids).all()
    with pytest.raises(ValueError, match="Valid values are: random, class, sequential"):
        forget_requests(digits, "everything", 0)


def test_shipped_settings_follow_the_scenario():
    from dcu.presets import get_preset

    random_fisher = get_preset("cifar10-cpu-sub")["unlearn"]["fisher"]
    class_fisher = get_preset("cifar10-cpu-sub", "class")["unlearn"]["fisher"]
    assert random_fisher == {"alpha": 0.004} and class_fisher == {"alpha": 0.001}
    assert get_preset("cifar10-cpu-sub", "sequential")["unlearn"]["fisher"] == random_fisher   # no entry: the default
    assert "ssd" not in get_preset("cifar10-cpu-sub")["unlearn"]   # withdrawn with the importance fix: defaults


def test_every_shipped_setting_names_a_field_of_its_method_and_the_resnet18_presets_share_theirs():
    from dataclasses import fields

    from dcu.presets import PRESETS, get_preset
    from unlearn import get_unlearner

    for name in PRESETS:
        for scenario in ("random", "class"):
            for method, settings in get_preset(name, scenario)["unlearn"].items():
                known = {f.name for f in fields(get_unlearner(method).Config)}
                assert set(settings) <= known, f"{name}/{scenario}/{method}: {set(settings) - known}"
    short, full = get_preset("cifar10-resnet18-short"), get_preset("cifar10-resnet18")
    assert short["unlearn"] == full["unlearn"] and short["train"]["epochs"] == 30
    assert full["unlearn"]["salun"] == {"epochs": 10, "lr": 0.013, "batch_size": 256, "schedule": "constant",
                                        "threshold": 0.5}   # SalUn's own command for random 10%


def test_a_cached_original_is_reused_only_for_the_same_model_settings(digits, tmp_path):
    from dcu.presets import get_preset
    from dcu.workflows.pipeline import train_original

    preset = {**get_preset("smoke"), "train": {**get_preset("smoke")["train"], "epochs": 1}}
    cache = tmp_path / "original.pt"
    train_original(digits, {**preset, "model_args": {"hidden": [32]}}, 0, cache)
    stamp = cache.stat().st_mtime_ns
    train_original(digits, {**preset, "model_args": {"hidden": [32]}}, 0, cache)
    assert cache.stat().st_mtime_ns == stamp            # reused, not retrained
    wider, meta = train_original(digits, {**preset, "model_args": {"hidden": [48]}}, 0, cache)
    assert list(meta["arch_args"]["hidden"]) == [48] and wider.feature_dim == 48
    default, meta = train_original(digits, {**preset, "model_args": {}}, 0, cache)   # the model's own defaults
    assert "hidden" not in meta["arch_args"] and default.feature_dim == 128


def test_class_wise_membership_is_measured_against_the_same_class(digits):
    """Non-members are unseen images of the forgotten class: a retrained model that never learnt the class
    is not told apart from them by its class (against other classes, loss_lr read ~100%)."""
    from dcu.train import accuracy
    from dcu.workflows.evaluate import model_metrics, same_classes

    forget_ids = digits.train.ids[digits.train.labels == 3]
    forget, retain = digits.train.subset(forget_ids), digits.train.without(forget_ids)
    non_members = same_classes(digits.test, forget)
    assert set(non_members.labels.tolist()) == {3} and len(non_members) == int((digits.test.labels == 3).sum())
    retrained = train_mlp(replace(digits, train=retain), epochs=20)
    assert accuracy(retrained, forget) < 0.1
    same = model_metrics(retrained, retain, forget, digits.test)["mia"]["loss_lr"]["headline"]
    others = digits.test.subset(digits.test.ids[digits.test.labels != 3])
    other = model_metrics(retrained, retain, forget, others, non_members=others)["mia"]["loss_lr"]["headline"]
    assert other > 0.9 and same < 0.75
