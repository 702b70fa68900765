"""The benchmark scripts run end to end on small data (the GPU one in its tiny CPU form), as CI can check."""
import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from condense import CondensedSet
from dcu.presets import get_preset
from dcu.progress import set_quiet
from dcu.train import logit_confidence
from dcu.workflows.audit import EnsembleStore
from dcu.workflows.pipeline import prepare_splits

ROOT = Path(__file__).resolve().parents[1]


def script(argv, *, cwd=None):
    """``subprocess.run([sys.executable, SCRIPT, *args], check=True, cwd=cwd)`` for a benchmark script, run in
    this process: its ``main(args)`` from ``cwd`` with ``sys.argv`` set, without paying torch's and the
    methods' imports again (about a third of this file's time went to them). Refusals stay subprocesses."""
    path = Path(argv[1])
    spec = importlib.util.spec_from_file_location(f"_benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    where, argv_before = os.getcwd(), sys.argv
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    os.chdir(cwd or where)
    sys.argv = [str(a) for a in argv[1:]]
    try:
        code = module.main([str(a) for a in argv[2:]])
    finally:   # what a script sets for its own process: the directory, argv, quiet, logging
        os.chdir(where)
        sys.argv = argv_before
        set_quiet(False)
        root.handlers[:], root.level = handlers, level
    assert not code, f"{path.name} {' '.join(map(str, argv[2:]))} exited {code}"


def test_gpu_benchmark_runs_tiny_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    script([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--tiny", "--quiet",
           "--methods", "retrain,dcu,ssd", "--out", str(out)], cwd=tmp_path)
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["tiny"]
    assert all(t["images_per_second"] > 0 for t in result["throughput"])
    assert result["dm"]["iterations_per_second"] > 0
    part = result["dcu_vs_retrain"]
    assert set(part["methods"]) == {"retrain", "dcu", "ssd"} and part["rte"] > 0 and not part["skipped"]
    assert part["rte"] == part["methods"]["retrain"]["seconds"] / part["methods"]["dcu"]["seconds"]
    assert all(row["device"] == "cpu" for row in part["methods"].values())


def test_gpu_benchmark_skips_methods_past_its_budget(tmp_path):
    out = tmp_path / "gpu.json"
    script([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--tiny", "--quiet",
           "--parts", "dcu_vs_retrain", "--methods", "finetune,ssd", "--budget-minutes", "0.0001",
           "--out", str(out)], cwd=tmp_path)
    result = json.loads(out.read_text())
    assert "throughput" not in result and "dm" not in result
    part = result["dcu_vs_retrain"]
    assert part["methods"] == {} and part["skipped"] == ["finetune", "ssd"] and "rte" not in part


FAKE_REFERENCE_UTILS = '''
import time
def get_dataset(dataset, data_path):
    raise RuntimeError("the harness must replace get_dataset")
def get_time():
    return "unpatched"
'''

# what the harness relies on in the reference main_DM.py: its flags, get_dataset's tuple, and a log line
# "<get_time()> iter = NNNNN, loss = ..." every 10 iterations
FAKE_REFERENCE_MAIN = '''
import argparse, sys, time
from utils import get_dataset, get_time
def main():
    parser = argparse.ArgumentParser()
    for flag in ("--dataset", "--model", "--init", "--save_path", "--data_path", "--method", "--dsa_strategy"):
        parser.add_argument(flag)
    for flag in ("--ipc", "--num_exp", "--num_eval", "--Iteration", "--batch_real"):
        parser.add_argument(flag, type=int)
    args = parser.parse_args()
    channel, im_size, num_classes, *_ , dst_train, dst_test, testloader = get_dataset(args.dataset, args.data_path)
    assert len(dst_train[0][0].shape) == 3 and num_classes == 10
    for it in range(args.Iteration + 1):
        time.sleep(0.001 * args.batch_real)
        if it % 10 == 0:
            print("%s iter = %05d, loss = %.4f" % (get_time(), it, 1.0))
'''


def test_reference_speed_harness_times_the_reference_log(tmp_path):
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "utils.py").write_text(FAKE_REFERENCE_UTILS)
    (reference / "main_DM.py").write_text(FAKE_REFERENCE_MAIN)
    out = tmp_path / "speed.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reference_speed.py"), "--reference", str(reference),
                    "--preset", "smoke", "--batch-real", "8", "--ipc", "2", "--warmup", "10", "--iterations", "10",
                    "--out", str(out)], check=True, timeout=600, cwd=tmp_path)
    run = json.loads(out.read_text())["runs"][0]
    assert 0.006 < run["reference_s_per_it"] < 0.1   # the fake sleeps 8 ms per iteration
    assert run["dcu_s_per_it"] > 0 and run["speedup"] == run["reference_s_per_it"] / run["dcu_s_per_it"]


def test_reference_speed_harness_runs_main_py_for_dc(tmp_path):
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "utils.py").write_text(FAKE_REFERENCE_UTILS)
    (reference / "main.py").write_text(FAKE_REFERENCE_MAIN.replace(
        "    args = parser.parse_args()\n", "    args = parser.parse_args()\n    assert args.method == 'DC' and args.dsa_strategy == 'None'\n"))
    out = tmp_path / "speed.json"
    script([sys.executable, str(ROOT / "benchmarks" / "reference_speed.py"), "--reference", str(reference),
            "--method", "dc", "--preset", "smoke", "--batch-real", "8", "--ipc", "1", "--warmup", "0",
            "--iterations", "10", "--out", str(out)], cwd=tmp_path)
    result = json.loads(out.read_text())
    assert result["reference_script"] == "main.py" and result["method"] == "dc"
    assert 0.006 < result["runs"][0]["reference_s_per_it"] < 0.1 and result["runs"][0]["dcu_s_per_it"] > 0


def test_unlearn_benchmark_appends_a_seed_to_an_earlier_run(tmp_path):
    out = tmp_path / "unlearn.json"
    base = [sys.executable, str(ROOT / "benchmarks" / "unlearning.py"), "--preset", "smoke", "--methods",
            "retrain,gradient_ascent", "--work-dir", str(tmp_path / "work"), "--out", str(out), "--quiet"]
    script(base + ["--seeds", "1"], cwd=tmp_path)
    script(base + ["--seeds", "1", "--first-seed", "1", "--append"], cwd=tmp_path)
    result = json.loads(out.read_text())
    assert [r["seed"] for r in result["runs"]] == [0, 1]
    assert result["machine"]["cores"] >= 1 and result["machine"]["threads"] >= 1 and result["versions"]["torch"]
    assert result["summary"]["gradient_ascent"]["forget_acc"]["n"] == 2
    clash = subprocess.run(base + ["--seeds", "1", "--append", "--scenario", "class"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert clash.returncode != 0 and "holds smoke / random" in clash.stderr   # never mixes scenarios
    mixed = subprocess.run(base + ["--seeds", "1", "--first-seed", "100", "--append"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert mixed.returncode != 0 and "development and evaluation seeds" in mixed.stderr   # nor seed roles
    assert [r["seed"] for r in json.loads(out.read_text())["runs"]] == [0, 1]   # the file is left as it was
    retrain_rows = [r["methods"]["retrain"] for r in result["runs"]]
    script([*base[:5], "finetune", *base[6:], "--seeds", "2", "--update"], cwd=tmp_path)
    updated = json.loads(out.read_text())
    assert [list(r["methods"]) for r in updated["runs"]] == [["retrain", "gradient_ascent", "finetune"]] * 2
    assert [r["methods"]["retrain"] for r in updated["runs"]] == retrain_rows   # the reference is kept
    assert all("gap" in r["methods"]["finetune"] and "rte" in r["methods"]["finetune"] for r in updated["runs"])
    assert all("updates" not in r for r in updated["runs"])   # same preset: nothing to record
    updated["runs"][0]["split_sizes"]["val"] = 1   # as if the preset's held-out split had been smaller
    out.write_text(json.dumps(updated))
    script([*base[:5], "finetune", *base[6:], "--seeds", "1", "--update"], cwd=tmp_path)
    run = json.loads(out.read_text())["runs"][0]
    assert run["updates"] == [{"methods": ["finetune"], "before": {"split_sizes": {**run["split_sizes"], "val": 1}}}]
    script([*base[:5], "finetune@late", *base[6:], "--first-seed", "1", "--seeds", "1", "--update"], cwd=tmp_path)
    late = json.loads(out.read_text())["summary"]["finetune@late"]   # a row on the second seed only
    assert late["forget_acc"]["n"] == 1 and "| finetune@late (1 of 2 seeds) |" in out.with_suffix(".md").read_text()


def test_unlearn_benchmark_takes_another_condenser_and_condensed_rows(tmp_path):
    out = tmp_path / "unlearn.json"
    base = [sys.executable, str(ROOT / "benchmarks" / "unlearning.py"), "--preset", "smoke", "--work-dir",
            str(tmp_path / "work"), "--out", str(out), "--quiet"]
    script(base + ["--methods", "retrain,dcu,finetune@syn", "--condense", "herding", "--set", "herding.ipc=3",
                   "--on-condensed", "finetune@syn"], cwd=tmp_path)
    result = json.loads(out.read_text())
    run = result["runs"][0]
    assert result["condense"] == {"method": "herding", "ipc": 3} and run["condense"]["images"] == 30
    assert run["methods"]["finetune@syn"]["retain_data"] == "condensed"
    assert run["methods"]["dcu"]["stats"]["condensed_images"] < 30   # the refreshed set: forgotten members gone
    joined = tmp_path / "joined.json"
    script([*base[:-3], "--out", str(joined), "--quiet", "--methods", "finetune@syn", "--on-condensed", "finetune@syn",
            "--retrain-from", str(out)], cwd=tmp_path)
    rows = json.loads(joined.read_text())["runs"][0]["methods"]
    assert list(rows) == ["retrain", "finetune@syn"] and rows["retrain"]["from"] == str(out)
    assert {k: v for k, v in rows["retrain"].items() if k != "from"} == run["methods"]["retrain"]
    assert "rte" in rows["finetune@syn"] and "gap" in rows["finetune@syn"]
    wrong = subprocess.run(base + ["--methods", "retrain,dcu", "--set", "dm.ipc=3"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert wrong.returncode != 0 and "condenser 'dm'" in wrong.stderr


def test_condense_benchmark_writes_rows_and_labelled_variants(tmp_path):
    out = tmp_path / "condense.json"
    base = [sys.executable, str(ROOT / "benchmarks" / "condensation.py"), "--preset", "smoke", "--ipc", "2",
            "--eval-runs", "2", "--protocol", "dc-cpu", "--budget-minutes", "0.02", "--out", str(out), "--quiet"]
    script(base + ["--methods", "random,dm"], cwd=tmp_path)
    script(base + ["--methods", "dm", "--set", "dm.batch_real=8", "--label", "batch_real 8",
           "--save-dir", str(tmp_path / "sets")], cwd=tmp_path)
    rows = {r["method"]: r for r in json.loads(out.read_text())["runs"]}
    assert set(rows) == {"random", "dm", "dm (batch_real 8)"}
    assert rows["dm (batch_real 8)"]["settings"]["batch_real"] == 8 and rows["dm"]["settings"]["batch_real"] == 256
    assert rows["dm"]["iterations"] >= 1 and rows["dm"]["condense_seconds"] < 30
    for row in rows.values():
        assert row["evaluation"]["protocol"] == "dc-cpu" and row["evaluation"]["runs"] == 2
        assert 0.1 < row["evaluation"]["mean"] <= 1.0
        assert row["machine"]["cores"] >= 1   # each row names its machine: a file gathers runs of several
    assert "dm (batch_real 8)" in out.with_suffix(".md").read_text()
    saved = CondensedSet.load(tmp_path / "sets" / "smoke-dm-batch_real_8-ipc2.pt")   # kept to evaluate again
    assert saved.method == "dm" and saved.config["batch_real"] == 8 and len(saved) == rows["dm (batch_real 8)"]["images"]
    script([sys.executable, str(ROOT / "benchmarks" / "condensation.py"), "--preset", "smoke", "--eval-runs", "1",
            "--protocol", "dc-cpu-w64", "--dsa", "off", "--label", "batch_real 8", "--evaluate",
            str(tmp_path / "sets" / "smoke-dm-batch_real_8-ipc2.pt"), "--out", str(out), "--quiet"], cwd=tmp_path)
    script([sys.executable, str(ROOT / "benchmarks" / "condensation.py"), "--preset", "smoke", "--eval-runs", "1",
            "--protocol", "dc-cpu-w64", "--dsa", "off", "--label", "batch_real 8", "--score-on", "val", "--evaluate",
            str(tmp_path / "sets" / "smoke-dm-batch_real_8-ipc2.pt"), "--out", str(out), "--quiet"], cwd=tmp_path)
    nothing = subprocess.run(base[:6] + ["--eval-runs", "0", "--methods", "random"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=600)
    assert nothing.returncode != 0 and "0 with --save-dir" in nothing.stderr   # a set neither scored nor kept
    runs = json.loads(out.read_text())["runs"]
    both = {r["evaluation"]["protocol"]: r for r in runs if r["method"] == "dm (batch_real 8)"
            and r["evaluation"]["scored_on"] == "test"}
    assert len(runs) == 5 and set(both) == {"dc-cpu", "dc-cpu-w64"}   # a new protocol adds a row, replaces none
    on_val = [r for r in runs if r["evaluation"]["scored_on"] == "val"]   # and so does a new split scored
    assert len(on_val) == 1 and on_val[0]["evaluation"]["protocol"] == "dc-cpu-w64"
    assert on_val[0]["evaluation"]["accuracies"] != both["dc-cpu-w64"]["evaluation"]["accuracies"]
    assert "on val" in out.with_suffix(".md").read_text()
    assert both["dc-cpu-w64"]["condense_seconds"] == both["dc-cpu"]["condense_seconds"]
    assert both["dc-cpu"]["evaluation"]["dsa_augment"] and not both["dc-cpu-w64"]["evaluation"]["dsa_augment"]
    assert both["dc-cpu-w64"]["condensed"].endswith("smoke-dm-batch_real_8-ipc2.pt")


def test_attack_benchmark_scores_every_model_with_every_attack(tmp_path):
    out = tmp_path / "attacks.json"
    base = [sys.executable, str(ROOT / "benchmarks" / "attacks.py"), "--preset", "smoke", "--shadows", "4",
            "--attacks", "lira,loss_lr", "--store", str(tmp_path / "store"), "--work-dir", str(tmp_path / "work"),
            "--out", str(out), "--quiet"]
    script(base + ["--shard", "1/2"], cwd=tmp_path)   # a shard trains its shadows (1 and 3) and scores nothing
    assert sorted(p.name for p in (tmp_path / "store").glob("shadow-*.pt")) == ["shadow-0001.pt", "shadow-0003.pt"]
    assert not out.exists()
    script(base + ["--methods", "retrain,finetune"], cwd=tmp_path)
    script(base + ["--methods", "finetune", "--set", "finetune.epochs=1", "--label", "1 epoch"], cwd=tmp_path)
    result = json.loads(out.read_text())
    assert result["shadows"] == 4 and result["seed_role"] == "development"
    assert list(result["models"]) == ["original", "retrain", "finetune", "finetune (1 epoch)"]   # the variant joins
    assert result["models"]["finetune (1 epoch)"]["settings"]["epochs"] == 1
    for row in result["models"].values():
        assert set(row["attacks"]) == {"lira", "loss_lr"}
    models = result["models"]
    # each row scores its own model: the 1-epoch variant is another model than the 5-epoch default
    assert models["finetune (1 epoch)"]["attacks"]["loss_lr"]["auc"] != models["finetune"]["attacks"]["loss_lr"]["auc"]
    assert models["retrain"]["forget_acc"] <= models["original"]["forget_acc"]
    assert "| retrain |" in out.with_suffix(".md").read_text()
    # another seed's original is scored with the same store: no shadow is trained again
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "store").glob("shadow-*.pt")}
    other = tmp_path / "seed1.json"
    script(base[:-2] + [str(other), "--quiet", "--seed", "1", "--shadow-seed", "0", "--methods", "finetune"], cwd=tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "store").glob("shadow-*.pt")} == before
    seed1 = json.loads(other.read_text())
    assert (seed1["seed"], seed1["shadow_seed"], seed1["shadows"]) == (1, 0, 4)
    assert (tmp_path / "work" / "original-smoke-mlp-seed1.pt").exists()   # seed 1's own original was trained


def test_tune_benchmark_searches_resumes_and_ships_the_chosen_settings(tmp_path):
    tuned = tmp_path / "tuned"
    tuned.mkdir()
    (tuned / "smoke.json").write_text(json.dumps({"preset": "smoke", "note": "kept",
                                                  "methods": {"finetune": {"settings": {"epochs": 1}, "source": "x"}}}))
    base = [sys.executable, str(ROOT / "benchmarks" / "tune.py"), "--preset", "smoke", "--methods", "gradient_ascent",
            "--work-dir", str(tmp_path / "work"), "--out-dir", str(tmp_path), "--tuned-dir", str(tuned), "--quiet"]
    script(base + ["--trials", "2"], cwd=tmp_path)
    script(base + ["--trials", "3", "--write-defaults"], cwd=tmp_path)  # continues
    search = json.loads((tmp_path / "tune-smoke-gradient_ascent.json").read_text())
    assert search["finished"] and len(search["trials"]) == 3 and search["preset"] == "smoke"
    shipped = json.loads((tuned / "smoke.json").read_text())
    assert shipped["note"] == "kept" and shipped["methods"]["finetune"]["settings"] == {"epochs": 1}
    entry = shipped["methods"]["gradient_ascent"]
    assert entry["settings"] == search["best"]["settings"] and "tune-smoke-gradient_ascent.json" in entry["source"]
    # a class-wise search adds settings for that scenario and keeps the random request's
    script(base + ["--trials", "2", "--scenario", "class", "--write-defaults"], cwd=tmp_path)
    class_search = json.loads((tmp_path / "tune-smoke-gradient_ascent-class.json").read_text())
    assert class_search["scenario"] == "class"
    entry = json.loads((tuned / "smoke.json").read_text())["methods"]["gradient_ascent"]
    assert entry["settings"] == search["best"]["settings"]
    assert entry["scenarios"]["class"]["settings"] == class_search["best"]["settings"]
    # a method with no random-request entry gets one holding its own defaults beside the class settings
    script(base[:5] + ["influence"] + base[6:] + ["--trials", "1", "--scenario", "class", "--write-defaults"], cwd=tmp_path)
    entry = json.loads((tuned / "smoke.json").read_text())["methods"]["influence"]
    assert entry["settings"] == {} and "alpha" in entry["scenarios"]["class"]["settings"]
    # a hand sweep: every combination of a grid once, chosen by the same held-out rule
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"gradient_ascent": {"epochs": [1, 2], "lr": [0.002, 0.02]}}))
    script(base + ["--grid", str(grid), "--write-defaults"], cwd=tmp_path)
    sweep = json.loads((tmp_path / "tune-smoke-gradient_ascent-grid.json").read_text())
    assert sorted((t["settings"]["epochs"], t["settings"]["lr"]) for t in sweep["trials"]) == [
        (1, 0.002), (1, 0.02), (2, 0.002), (2, 0.02)]
    assert all("val_acc" in t and "test_acc" not in t for t in sweep["trials"])   # held-out images only
    entry = json.loads((tuned / "smoke.json").read_text())["methods"]["gradient_ascent"]
    assert entry["settings"] == sweep["best"]["settings"] and "-grid.json" in entry["source"]


def test_audit_benchmark_writes_a_scorecard_per_seed(tmp_path):
    out = tmp_path / "audit.json"
    script([sys.executable, str(ROOT / "benchmarks" / "audit.py"), "--preset", "smoke", "--seed", "0",
           "--models", "3", "--methods", "finetune,dcu", "--store", str(tmp_path / "store"),
           "--work-dir", str(tmp_path / "work"), "--out", str(out), "--quiet", "--threads", "1"])
    result = json.loads(out.read_text())["runs"]["0"]
    assert result["preset"] == "smoke" and result["seed_role"] == "development" and result["versions"]["torch"]
    rows = result["rows"]
    assert rows["ceiling (retrain vs retrain)"]["forgetting_quality"] > rows["original (no unlearning)"]["forgetting_quality"]
    assert (tmp_path / "audit-seed0.png").exists()
    header, _, ceiling_line = (tmp_path / "audit-seed0.md").read_text().splitlines()[2:5]
    assert header.count("|") == ceiling_line.count("|") and "loss_lr" in header   # every row fills every column
    # a score added later: --rescore recomputes the rows from the stored logits, the rest of the entry kept
    stored = json.loads(out.read_text())
    del stored["runs"]["0"]["rows"]["finetune"]["loss_lr"]
    stored["runs"]["0"]["settings"] = {"finetune": {"marker": 1}, "dcu": {}}
    out.write_text(json.dumps(stored))
    script([sys.executable, str(ROOT / "benchmarks" / "audit.py"), "--preset", "smoke", "--seed", "0",
           "--rescore", "--out", str(out), "--quiet"])
    again = json.loads(out.read_text())["runs"]["0"]
    assert again["rows"]["finetune"]["loss_lr"] == rows["finetune"]["loss_lr"]
    assert again["rows"]["finetune"]["epsilons"] == rows["finetune"]["epsilons"]
    assert again["settings"] == {"finetune": {"marker": 1}, "dcu": {}}
    # a method added later is built alone and joins the seed's rows
    script([sys.executable, str(ROOT / "benchmarks" / "audit.py"), "--preset", "smoke", "--seed", "0",
           "--models", "3", "--methods", "gradient_ascent", "--store", str(tmp_path / "store"), "--work-dir",
           str(tmp_path / "work"), "--out", str(out), "--quiet", "--threads", "1"])
    joined = json.loads(out.read_text())["runs"]["0"]
    assert {"finetune", "dcu", "gradient_ascent"} <= set(joined["rows"])
    assert set(joined["settings"]) == {"finetune", "dcu", "gradient_ascent"}
    assert joined["condensed"] == result["condensed"] and result["condensed"]["images"] > 0   # dcu's set, kept
    # a row on another condenser's set: kept beside the preset's set, and each row says which set it used
    ncfm = ["--set", "ncfm.iterations=2", "--set", "ncfm.net_width=16", "--set", "ncfm.num_freqs=64", "--set",
            "ncfm.num_models=1", "--set", "ncfm.pretrain_epochs=1", "--set", "ncfm.buckets=true"]
    base = [sys.executable, str(ROOT / "benchmarks" / "audit.py"), "--preset", "smoke", "--seed", "0", "--models", "3",
            "--store", str(tmp_path / "store"), "--work-dir", str(tmp_path / "work"), "--out", str(out), "--quiet",
            "--threads", "1", "--condense", "ncfm"]
    script(base + ["--methods", "dcu@ncfm", *ncfm])
    sets = json.loads(out.read_text())["runs"]["0"]["condensed_sets"]
    assert sets["dcu@ncfm"]["method"] == "ncfm" and sets["dcu@ncfm"]["settings"]["buckets"] is True
    assert sets["dcu"] == result["condensed"] and (tmp_path / "store" / "condensed-ncfm.pt").exists()
    # a refresh setting reuses the kept set (not made again) and is recorded for the row that used it
    made = (tmp_path / "store" / "condensed-ncfm.pt").stat().st_mtime_ns
    script(base + ["--methods", "dcu@ncfm0", *ncfm, "--set", "ncfm.refresh_iterations=0"])
    sets = json.loads(out.read_text())["runs"]["0"]["condensed_sets"]
    assert (tmp_path / "store" / "condensed-ncfm.pt").stat().st_mtime_ns == made
    assert sets["dcu@ncfm0"]["settings"]["refresh_iterations"] == 0 and sets["dcu@ncfm"]["settings"]["refresh_iterations"] is None
    assert sets["dcu@ncfm0"]["offline_seconds"] == sets["dcu@ncfm"]["offline_seconds"]
    refused = subprocess.run(base + ["--methods", "dcu@x", "--set", "dm.iterations=2"], capture_output=True, text=True)
    assert refused.returncode == 2 and "names condenser 'dm'" in refused.stderr


def test_retrain_schedule_finds_the_fastest_schedule_then_times_against_it(tmp_path):
    out = tmp_path / "schedule.json"
    base = [sys.executable, str(ROOT / "benchmarks" / "retrain_schedule.py"), "--preset", "smoke", "--work-dir",
            str(tmp_path / "work"), "--out", str(out), "--quiet"]
    script(base + ["--seeds", "0,1", "--epochs", "2,10"], cwd=tmp_path)
    accuracy = json.loads(out.read_text())["accuracy"]
    assert sorted({r["epochs"] for r in accuracy["rows"]}) == [2, 10, 30] and len(accuracy["rows"]) == 6
    mean = lambda e: sum(r["val_acc"] for r in accuracy["rows"] if r["epochs"] == e) / 2   # noqa: E731
    assert mean(accuracy["fastest_epochs"]) >= mean(30) - accuracy["tolerance"]
    assert all(mean(e) < mean(30) - accuracy["tolerance"] for e in (2, 10) if e < accuracy["fastest_epochs"])
    script(base + ["--seeds", "0", "--time", "--methods", "dcu"], cwd=tmp_path)
    timing = json.loads(out.read_text())["timing"]
    short = str(accuracy["fastest_epochs"])
    assert timing["methods"]["dcu"]["rte_fastest_schedule"] == pytest.approx(
        timing["retrain_seconds"][short] / timing["methods"]["dcu"]["online_seconds"])


def test_tuning_refuses_an_evaluation_seed(tmp_path):
    """Settings are chosen on development seeds: the tables' seeds stay unseen until the end."""
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tune.py"), "--preset", "smoke", "--methods",
                          "gradient_ascent", "--seed", "100", "--work-dir", str(tmp_path), "--out-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "evaluation seed" in run.stderr and not list(tmp_path.glob("*.json"))


def test_reference_targets_then_audit_then_diagnostics(tmp_path):
    """The reference store feeds a dcu variant in the audit, and the diagnosis reads both: dcu meets its
    per-example targets far better than the untouched original does."""
    def run(name, *args):
        script([sys.executable, str(ROOT / "benchmarks" / name), "--preset", "smoke", "--seed", "0",
               "--work-dir", str(tmp_path / "work"), "--quiet", "--threads", "1", *args], cwd=tmp_path)

    ref = tmp_path / "ref.pt"
    make_ref = ("reference_targets.py", "--shadows", "4", "--out", str(ref), "--results", str(tmp_path / "ref.json"))
    run(*make_ref, "--shard", "1/2")   # shadows 1 and 3: the store is not complete, so no reference yet
    assert not ref.exists() and len(list((tmp_path / "runs" / "shadows-smoke-seed0").glob("shadow-*.pt"))) == 2
    run(*make_ref, "--shard", "0/2")
    assert json.loads((tmp_path / "ref.json").read_text())["shadows"] == 4
    run("audit.py", "--models", "3", "--methods", "dcu,dcu@ref", "--set", f"dcu@ref.reference={ref}",
        "--store", str(tmp_path / "store"), "--out", str(tmp_path / "audit.json"))
    run("reference_diagnostics.py", "--store", str(tmp_path / "store"), "--reference", str(ref), "--fit", "{}",
        "--fit", '{"epochs": 80, "lr": 0.1}', "--out", str(tmp_path / "diag.json"))
    diag = json.loads((tmp_path / "diag.json").read_text())
    assert set(diag["ensembles"]) == {"dcu", "dcu@ref"} and diag["retrain_models"] == 6
    short, long, untouched = *diag["fit"], diag["original against the reference prediction"]
    assert long["mean_abs_error"] < short["mean_abs_error"] < untouched["mean_abs_error"]
    # the oracle reference: the first (ceiling) half of the store's retrain ensemble, per forget id
    oracle = tmp_path / "oracle.pt"
    run("reference_diagnostics.py", "--store", str(tmp_path / "store"), "--oracle", str(oracle))
    made = torch.load(oracle, weights_only=True)
    store = EnsembleStore(tmp_path / "store")
    forget = prepare_splits(get_preset("smoke"), None).train.subset(store.forget_ids)
    phi = logit_confidence(store.bank("retrain", "retrain")["forget"], forget.labels)   # (6 models, examples)
    order = torch.argsort(forget.ids)
    assert made["shadows"] == 3 and torch.equal(made["ids"], forget.ids[order]) and made["offset"] == 0
    assert torch.allclose(made["out_mean"], phi[:3].mean(0)[order]) and torch.allclose(made["out_std"], phi[:3].std(0)[order])
    run("audit.py", "--models", "3", "--methods", "dcu@oracle", "--set", f"dcu@oracle.reference={oracle}",
        "--set", "dcu@oracle.reference_offset=0", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "audit.json"))
    assert "dcu@oracle" in json.loads((tmp_path / "audit.json").read_text())["runs"]["0"]["rows"]


def test_refresh_benchmark_times_each_request_on_a_saved_set(tmp_path):
    sets, out = tmp_path / "sets", tmp_path / "refresh.json"
    script([sys.executable, str(ROOT / "benchmarks" / "condensation.py"), "--preset", "smoke", "--ipc", "2",
           "--methods", "ncfm", "--eval-runs", "1", "--protocol", "dc-cpu", "--budget-minutes", "1",
           "--set", "ncfm.iterations=4", "--set", "ncfm.net_width=16", "--set", "ncfm.num_freqs=64",
           "--set", "ncfm.num_models=1", "--set", "ncfm.pretrain_epochs=1", "--set", "ncfm.buckets=true",
           "--label", "bucketed", "--save-dir", str(sets), "--out", str(tmp_path / "condense.json"),
           "--quiet"], cwd=tmp_path)
    saved = sets / "smoke-ncfm-bucketed-ipc2.pt"
    script([sys.executable, str(ROOT / "benchmarks" / "refresh.py"), "--preset", "smoke", "--condensed",
           str(saved), "--requests", "random:0.002,class:3", "--set", "refresh_iterations=2",
           "--eval-runs", "1", "--protocol", "dc-cpu-w64", "--skip-full", "--out", str(out), "--quiet"], cwd=tmp_path)
    result = json.loads(out.read_text())
    assert result["condensed"]["evaluation"] is None   # condensation.py scored the saved set
    assert {r["evaluation"]["protocol"] for r in result["requests"]} == {"dc-cpu-w64"}
    assert result["condensed"]["buckets"] == 20 and result["condensed"]["settings"]["refresh_iterations"] == 2
    few, one_class = result["requests"]
    assert 1 <= few["buckets_remade"] <= few["forget"] <= 5   # a few ids touch at most as many buckets
    assert one_class["buckets_remade"] == 0 and one_class["buckets_dropped"] == 2   # a whole class goes
    assert one_class["images_after"] == result["condensed"]["images"] - 2 * 4
    assert all(0 < r["seconds"] and 0.1 < r["evaluation"]["mean"] <= 1.0 for r in result["requests"])
    script([sys.executable, str(ROOT / "benchmarks" / "grids.py"), str(saved), "--out-dir", str(tmp_path)], cwd=tmp_path)
    assert (tmp_path / "grid-smoke-ncfm-bucketed-ipc2.png").stat().st_size > 1000
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "refresh.py"), "--preset", "smoke", "--condensed",
                          str(saved), "--set", "no_such_setting=1"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "no_such_setting" in bad.stderr


def test_audit_tables_average_each_row_over_the_seeds_it_ran_on(tmp_path, capsys):
    def row(score, val=None):
        r = {"forgetting_score": score, "forgetting_quality": score, "ulira": {"auc": 0.5, "tpr_at_1fpr": 0.01},
             "klom": {"forget": 1.0}, "retain_acc": 0.7, "forget_acc": 0.6, "test_acc": 0.6, "seconds": 1.0}
        return {**r, "val_acc": val} if val is not None else r

    runs = {"100": {"seed_role": "evaluation", "rows": {"ceiling (retrain vs retrain)": row(0.2, 0.5),
                                                        "dcu": row(0.1, 0.5), "late": row(0.2, 0.4)}},
            "101": {"seed_role": "evaluation", "rows": {"ceiling (retrain vs retrain)": row(0.1, 0.5),
                                                        "dcu": row(0.1)}},
            "0": {"seed_role": "development", "rows": {"ceiling (retrain vs retrain)": row(9.0)}}}
    path = tmp_path / "audit.json"
    path.write_text(json.dumps({"benchmark": "audit", "runs": runs}))
    script([sys.executable, str(ROOT / "benchmarks" / "audit_tables.py"), str(path)])
    lines = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in capsys.readouterr().out.splitlines()
             if line.startswith("| ") and "---" not in line}
    assert lines["ceiling (retrain vs retrain)"][1:4] == ["all", "0.150", "100%"]   # development seed 0 left out
    assert lines["dcu"][1:4] == ["all", "0.100", "75%"]   # the mean of its shares of each seed's ceiling
    assert lines["late"][1:4] == ["100", "0.200", "100%"]
    header = lines["ensemble"]
    assert lines["dcu"][header.index("val")] == "—" and lines["late"][header.index("val")] == "40.0"


def test_class_reset_benchmark_compares_both_answers_to_a_class_request(tmp_path):
    out = tmp_path / "class.json"
    script([sys.executable, str(ROOT / "benchmarks" / "class_reset.py"), "--preset", "smoke", "--seed", "0",
           "--forget-class", "3", "--work-dir", str(tmp_path / "work"), "--out", str(out), "--quiet"])
    result = json.loads(out.read_text())
    assert result["seed_role"] == "development" and result["forget_class"] == 3 and result["versions"]["torch"]
    original, mask, reset = (result["rows"][k] for k in ("original", "dcu (switched-off row)", "dcu class_reset"))
    assert original["forget_acc"] > 0.8 and mask["forget_acc"] == 0.0 and reset["forget_acc"] < 0.05
    assert reset["settings"] == {"class_reset": True} and mask["retain_acc"] >= original["retain_acc"] - 0.01
    assert reset["retain_acc"] > 0.5 and reset["steps"] > 0 == mask["steps"]   # the classifier re-made, or not


def test_class_probe_layers_reads_the_class_at_every_block_and_after_the_eraser(tmp_path):
    out = tmp_path / "layers.json"
    script([sys.executable, str(ROOT / "benchmarks" / "class_probe_layers.py"), "--preset", "smoke", "--seed", "0",
           "--forget-class", "3", "--erase", "0,1", "--retrains", "1", "--work-dir", str(tmp_path / "work"),
           "--out", str(out), "--quiet"])
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == {"original", "retrain 0", "dcu class_reset, class_erase 0", "dcu class_reset, class_erase 1"}
    kept, erased = rows["dcu class_reset, class_erase 0"], rows["dcu class_reset, class_erase 1"]
    blocks = [k for k in kept if k.startswith("block ")]
    assert blocks and all(kept[k] == erased[k] for k in blocks)      # the blocks below are the original's
    assert kept["features"] == rows["original"]["features"] > erased["features"]
    assert rows["retrain 0"]["features"] < rows["original"]["features"]
    assert rows["retrain 0"]["seconds"] > 0 and kept["seconds"] > 0 == rows["original"]["seconds"]


def test_attack_tables_average_over_one_role_and_compare_lira_with_the_same_seeds_retrain(tmp_path, capsys):
    def row(lira, forget=0.7):
        attack = {"auc": lira, "tpr_at_1fpr": 0.02}
        return {"forget_acc": forget, "test_acc": 0.7, "attacks": {"lira": attack, "rmia": attack, "loss_lr": attack}}

    files = []
    for seed, role, models in [(100, "evaluation", {"retrain": row(0.50), "dcu": row(0.60, 0.8)}),
                               (101, "evaluation", {"retrain": row(0.48), "dcu": row(0.52, 0.6)}),
                               (0, None, {"retrain": row(0.9), "dcu": row(0.9)})]:   # an older file: no seed_role
        result = {"preset": "smoke", "seed": seed, "models": models, **({"seed_role": role} if role else {})}
        files.append(tmp_path / f"attacks-smoke-seed{seed}.json")
        files[-1].write_text(json.dumps(result))
    script([sys.executable, str(ROOT / "benchmarks" / "attack_tables.py"), *map(str, files)])
    out = capsys.readouterr().out
    assert out.startswith("Seeds 100, 101 (evaluation)")   # development seed 0 left out
    lines = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in out.splitlines() if line.startswith("| ")}
    header = lines["model"]
    dcu = lines["dcu"]
    assert dcu[1] == "all" and dcu[header.index("forget acc")] == "70.0 ± 14.1"
    assert dcu[header.index("LiRA AUC")] == "0.560 ± 0.057" and dcu[-1].strip(" |") == "+0.070"
    assert lines["retrain"][-1].strip(" |") == "+0.000"
    script([sys.executable, str(ROOT / "benchmarks" / "attack_tables.py"), *map(str, files), "--model", "dcu", "--model", "retrain"])
    kept = [line.split(" | ")[0].strip("| ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert kept == ["model", "dcu", "retrain"]
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"preset": "audit", "seed": 100, "models": {}}))
    refused = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "attack_tables.py"), str(files[0]), str(other)],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "several presets (audit, smoke)" in refused.stderr   # one preset at a time


def test_standard_table_runs_tiny_with_published_rows_beside_ours(tmp_path):
    published = tmp_path / "published.json"
    published.write_text(json.dumps({"paper": {"cite": "Paper (2024)", "rows": {"random": {
        "Retrain": {"UA": 5.0, "MIA-Efficacy": 12.5, "RA": 100.0, "TA": 94.0, "avg_gap": 0.0, "minutes": 40.0}}},
        "status": "class rows not transcribed"}}))
    out = tmp_path / "standard.json"
    script([sys.executable, str(ROOT / "benchmarks" / "standard.py"), "--device", "cpu", "--tiny", "--quiet",
            "--methods", "retrain,finetune,dcu", "--published", str(published), "--work-dir", str(tmp_path / "runs"),
            "--out", str(out)], cwd=tmp_path)
    report = json.loads(out.read_text())
    assert set(report["scenarios"]) == {"random", "class"} and report["tiny"]
    for scenario, part in report["scenarios"].items():
        table = part["table"]
        assert set(table) == {"retrain", "finetune", "dcu"} and table["retrain"]["avg_gap"] == 0
        for name, row in table.items():   # SalUn's columns are read off the evaluated rows, in percent
            assert row["UA"] == pytest.approx(100 * (1 - part["methods"][name]["forget_acc"]))
            assert row["MIA-Efficacy"] == pytest.approx(100 * part["methods"][name]["mia"]["svc_efficacy"]["headline"])
        # forgetting a whole class: retraining never predicts it, fine-tuning a few epochs still does
        if scenario == "class":
            assert table["retrain"]["UA"] == 100 and table["finetune"]["UA"] < 50
    assert "| Retrain | Paper (2024) | 5.00 | 12.50 | 100.00 | 94.00 | 0.00 | 40.00 |" in report["scenarios"]["random"]["markdown"]
    assert "Paper (2024): class rows not transcribed." in report["scenarios"]["class"]["markdown"]
    assert out.with_suffix(".md").read_text().count("| retrain | ours |") == 2


def test_standard_table_skips_methods_past_its_budget(tmp_path):
    out = tmp_path / "standard.json"
    script([sys.executable, str(ROOT / "benchmarks" / "standard.py"), "--device", "cpu", "--tiny", "--quiet",
            "--methods", "retrain,ssd", "--budget-minutes", "0", "--work-dir", str(tmp_path / "runs"),
            "--out", str(out)], cwd=tmp_path)
    for part in json.loads(out.read_text())["scenarios"].values():
        assert part["methods"] == {} and part["skipped"] == ["retrain", "ssd"]
    assert not (tmp_path / "runs").exists()   # past the budget not even an original is trained


def test_dc_cost_counts_an_iterations_image_passes(tmp_path):
    out = tmp_path / "cost.json"
    script([sys.executable, str(ROOT / "benchmarks" / "dc_cost.py"), "--ipc", "10", "--width", "8", "--batch", "4",
            "--repeats", "1", "--out", str(out)], cwd=tmp_path)
    result = json.loads(out.read_text())
    # the reference's loops at IPC 10: 10 outer steps of 10 classes x 256 real images, 9 x 50 inner epochs of 100
    assert result["image_passes"] == {"outer": 10, "inner": 50, "real": 25600, "synthetic_matching": 1000,
                                      "inner_training": 45000}
    assert result["estimated_seconds_per_iteration"] == pytest.approx(71600 * result["pass_seconds"]["default"] / 4)


def test_pareto_charges_a_rebuilt_store_its_own_shadow_seconds(tmp_path):
    path = ROOT / "benchmarks" / "pareto.py"
    spec = importlib.util.spec_from_file_location("_benchmark_pareto_direct", path)
    pareto = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pareto)
    for name, seconds in (("s32", 100.0), ("s32-rebuild", 300.0)):   # both wrote the same reference file
        (tmp_path / f"reference-audit-seed100-{name}.json").write_text(json.dumps(
            {"reference_file": "runs/ref.pt", "shadow_seconds_this_run": seconds, "shadows": 32,
             "shadows_trained_now": 16}))
    skip = ["-s32-rebuild"]
    assert pareto.reference_store_seconds("audit", 100, "runs/ref.pt", "", skip, tmp_path) == 200.0
    assert pareto.reference_store_seconds("audit", 100, "runs/ref.pt", "-s32-rebuild", skip, tmp_path) == 600.0
    assert pareto.reference_store_seconds("audit", 100, "runs/ref.pt", results=tmp_path) == 600.0   # first by name
    (tmp_path / "reference-audit-seed100-k75.json").write_text(json.dumps(
        {"reference_file": "runs/k75.pt", "shadow_seconds_this_run": 50.0, "shadow_seconds_from_file_times": 400.0,
         "shadows": 64, "shadows_trained_now": 32}))   # a row of the rebuilt audit with a store of another name;
    # its files' times span two sessions (a resumed store): the run's own pace per shadow is what counts
    assert pareto.reference_store_seconds("audit", 100, "runs/k75.pt", "-s32-rebuild", skip, tmp_path) == 100.0
    with pytest.raises(FileNotFoundError, match="wrote runs/other.pt"):
        pareto.reference_store_seconds("audit", 100, "runs/other.pt", results=tmp_path)
    (tmp_path / "reference-audit-seed101-linked.json").write_text(json.dumps(
        {"reference_file": "runs/ref.pt", "shadow_seconds_this_run": 0.1, "shadow_seconds_from_file_times": None,
         "shadows": 32, "shadows_trained_now": 0}))   # every shadow linked in from another store
    with pytest.raises(ValueError, match="--offline"):
        pareto.reference_store_seconds("audit", 101, "runs/ref.pt", results=tmp_path)


def test_pareto_keeps_a_method_run_with_other_settings_apart(tmp_path, capsys):
    from dcu.presets import tuned_settings

    def row(score, seconds):
        return {"forgetting_score": score, "ulira": {"auc": 0.5}, "forget_acc": 0.6, "test_acc": 0.6,
                "seconds": seconds}

    def run(rows, settings):
        return {"seed_role": "evaluation", "preset": "audit", "settings": settings,
                "rows": {"ceiling (retrain vs retrain)": row(0.2, 40.0), **rows}}

    shipped = tuned_settings("audit")["ct"]
    # msg's settings name a per-seed file in the first run: still one method
    first = {"100": run({"ct": row(0.01, 10.0), "dcu": row(0.05, 2.0), "msg": row(0.02, 5.0)},
                        {"ct": {}, "dcu": {}, "msg": {"file": "seed100"}}),
             "101": run({"msg": row(0.04, 5.0)}, {"msg": {"file": "seed101"}}),
             "0": {"seed_role": "development", "rows": {}}}
    second = {"100": run({"ct": row(0.15, 20.0), "dcu": row(0.07, 2.0), "kde": row(0.1, 1.0)},
                         {"ct": shipped, "dcu": {}, "kde": {"lr": 1.0}}),
              "101": run({"ct": row(0.12, 20.0)}, {"ct": shipped})}
    other = {"100": run({"kde": row(0.0, 1.0)}, {"kde": {}})}
    paths = []
    for name, runs in (("first", first), ("second", second), ("other", other)):
        paths += ["--audit", str(tmp_path / f"{name}.json")]
        (tmp_path / f"{name}.json").write_text(json.dumps({"runs": runs}))
    script([sys.executable, str(ROOT / "benchmarks" / "pareto.py"), *paths])
    points = {p["method"]: p for p in json.loads((tmp_path / "audit-pareto.json").read_text())["points"]}
    assert set(points) == {"ct", "ct, tuned", "dcu", "kde", "kde, other", "msg"}
    assert points["msg"]["seeds"] == [100, 101]
    assert points["ct"]["score"] == 0.01 and points["ct, tuned"]["seeds"] == [100, 101]
    assert abs(points["ct, tuned"]["score"] - 0.135) < 1e-9
    assert points["dcu"]["score"] == 0.05 and points["dcu"]["seeds"] == [100]   # the first run of a seed counts
    assert points["ct, tuned"]["pareto"] and points["kde"]["pareto"] and not points["ct"]["pareto"]
    assert (tmp_path / "audit-pareto.png").exists()
