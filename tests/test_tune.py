"""dcu tune: a multi-objective search on held-out training data, never the test set."""
import json

import pytest
import torch
from conftest import SMOKE_TRAIN

from dcu.forget import random_ids
from dcu.workflows.cli import main
from dcu.workflows.tune import OBJECTIVES, split_validation, tune

pytest.importorskip("optuna")


def test_tune_searches_the_space_and_picks_a_pareto_trial(digits, mlp, monkeypatch):
    forget_ids = random_ids(digits.train.ids, 0.1, 0)
    seen = []
    import dcu.workflows.tune as tune_module

    real_metrics = tune_module.model_metrics

    def spy(model, retain, forget, held_out, **kw):
        seen.append(held_out)
        return real_metrics(model, retain, forget, held_out, **kw)

    monkeypatch.setattr(tune_module, "model_metrics", spy)
    result = tune("finetune", mlp, digits, forget_ids, train_config=SMOKE_TRAIN, trials=4, seed=0)
    assert len(result["trials"]) == 4 and result["best"]["number"] in result["pareto"]
    for trial in result["trials"]:
        assert set(trial["objectives"]) == set(OBJECTIVES)
        assert 1 <= trial["settings"]["epochs"] <= 10 and 1e-3 <= trial["settings"]["lr"] <= 1e-1
    best_sum = result["best"]["sum"]
    assert all(best_sum <= sum(t["objectives"].values()) + 1e-12 for t in result["trials"] if t["number"] in result["pareto"])
    # every measurement used held-out training images, never a test image
    method_half, objective_half = split_validation(digits.val, 0)
    assert all(set(h.ids.tolist()) == set(objective_half.ids.tolist()) for h in seen)
    assert not any(h is digits.test for h in seen) and torch.isin(objective_half.ids, digits.val.ids).all()
    assert not set(method_half.ids.tolist()) & set(objective_half.ids.tolist())


def test_tune_cli_writes_the_result_and_fixes_given_settings(tmp_path):
    original = tmp_path / "original.pt"
    assert main(["train", "--dataset", "digits", "--model", "mlp", "--epochs", "5", "--out", str(original), "--quiet"]) == 0
    out = tmp_path / "tune.json"
    assert main(["tune", "--dataset", "digits", "--model", str(original), "--forget-frac", "0.1", "--method", "salun",
                 "--trials", "2", "--set", "epochs=1", "--out", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["finished"] and result["method"] == "salun" and len(result["trials"]) == 2
    assert all(t["settings"]["epochs"] == 1 for t in result["trials"]) and "epochs" not in result["search_space"]
    assert main(["tune", "--dataset", "digits", "--model", str(original), "--forget-frac", "0.1", "--method", "ssd",
                 "--trials", "1", "--set", "alpha=2", "--set", "dampening=1", "--out", str(tmp_path / "x.json"),
                 "--quiet"]) == 2


def test_a_stopped_search_resumes_to_the_uninterrupted_result(digits, mlp):
    forget_ids = random_ids(digits.train.ids, 0.1, 0)
    kwargs = dict(train_config=SMOKE_TRAIN, seed=0, fixed={"epochs": 1})
    whole = tune("finetune", mlp, digits, forget_ids, trials=4, **kwargs)
    partial = {}

    class Stop(Exception):
        pass

    def stop_after_two(result):
        partial.update(json.loads(json.dumps(result)))   # what the CLI would have written to disk
        if len(result["trials"]) == 2:
            raise Stop

    with pytest.raises(Stop):
        tune("finetune", mlp, digits, forget_ids, trials=4, on_trial=stop_after_two, **kwargs)
    resumed = tune("finetune", mlp, digits, forget_ids, trials=4, resume=partial, **kwargs)
    assert [t["settings"] for t in resumed["trials"]] == [t["settings"] for t in whole["trials"]]
    assert resumed["best"] == whole["best"] and resumed["pareto"] == whole["pareto"]
    with pytest.raises(Exception, match="other settings"):
        tune("finetune", mlp, digits, forget_ids, trials=4, resume={**partial, "seed": 5}, **kwargs)


def test_a_forget_bound_puts_forgetting_first():
    from dcu.workflows.tune import choose

    def trial(number, retain, forget, val, one_minus_ind):
        return {"number": number, "settings": {"lr": number}, "objectives": {
            "retain_gap": retain, "forget_gap": forget, "val_gap": val, "one_minus_indiscernibility": one_minus_ind}}

    # a class-wise search: the settings that keep the class look best by the sum (the attack cannot tell
    # a forgotten class from a kept one as the retrained model does)
    result = {"method": "m", "pareto": [0, 1, 2, 3], "trials": [
        trial(0, 0.01, 0.60, 0.01, 0.10), trial(1, 0.08, 0.01, 0.05, 0.98),
        trial(2, 0.03, 0.005, 0.02, 0.99), trial(3, 0.01, 0.03, 0.01, 0.97), trial(4, 0.0, 0.0, 0.0, 0.0)]}
    assert choose(result)["number"] == 0
    bounded = choose(result, forget_bound=0.02)
    assert bounded["number"] == 2 and bounded["bound_met"] and "forget gap <= 0.02" in bounded["rule"]
    none_within = choose(result, forget_bound=0.001)   # trial 4 is not on the front: never chosen
    assert none_within["number"] == 2 and not none_within["bound_met"]
