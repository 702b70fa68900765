"""Every example script runs on the smoke preset and writes its table, JSON and figure, with the numbers a
working method gives."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

CASES = {
    "random_forgetting": ["--models", "mlp"],
    "class_forgetting": [],
    "ipc_ablation": ["--ipcs", "2,5"],
    "unlearning_cycles": ["--cycles", "2", "--request-frac", "0.05"],
    "privacy_treatment": [],
    "condensation_benchmark": ["--methods", "random,herding,dm,fdm", "--ipc", "2", "--eval-runs", "1",
                               "--set", "dm.iterations=10"],
}


def _random_forgetting(results):
    methods = results["mlp"]["methods"]
    assert {"retrain", "finetune", "dcu"} <= set(methods) and methods["retrain"]["rte"] == 1.0
    assert methods["retrain"]["test_acc"] > 0.85 and methods["retrain"]["forget_acc"] > 0.85   # unseen digits
    assert methods["dcu"]["stats"]["forget_trained"] == results["mlp"]["split_sizes"]["forget"]
    assert abs(methods["dcu"]["gap"]["forget_acc"]) < 0.1 and methods["dcu"]["retain_acc"] > 0.9


def _class_forgetting(results):
    methods = results["methods"]
    assert methods["retrain"]["forget_acc"] == 0.0 and methods["retrain"]["test_forget_class_acc"] == 0.0
    assert methods["dcu"]["forget_acc"] < 0.05 and methods["dcu"]["retain_acc"] > 0.9
    assert methods["finetune"]["forget_acc"] > 0.5   # five epochs on the retain set do not forget a class


def _ipc_ablation(results):
    assert set(results["runs"]) == {"2", "5"}
    for ipc, run in results["runs"].items():
        assert run["condense"]["images"] == 10 * int(ipc) == run["dcu"]["stats"]["condensed_images"]
        assert run["dcu"]["retain_acc"] > 0.9


def _unlearning_cycles(results):
    for rows in results.values():
        assert [r["cycle"] for r in rows] == [1, 2]
        assert rows[1]["forgotten"] == 2 * rows[0]["forgotten"] > 0   # requests accumulate
    assert all(r["retain_acc"] > 0.9 for r in results["dcu"])


def _privacy_treatment(results):
    for row in results["methods"].values():
        assert set(row["mia"]) >= {"loss_lr", "svc_efficacy", "entropy"}
    assert results["methods"]["retrain"]["gap"]["avg_gap"] == 0.0


def _condensation_benchmark(results):
    assert set(results) == {"random", "herding", "dm", "fdm"}
    assert all(row["images"] == 20 and row["mean"] > 0.5 for row in results.values())   # chance is 0.1


CONTENT = {"random_forgetting": _random_forgetting, "class_forgetting": _class_forgetting,
           "ipc_ablation": _ipc_ablation, "unlearning_cycles": _unlearning_cycles,
           "privacy_treatment": _privacy_treatment, "condensation_benchmark": _condensation_benchmark}


def test_every_example_has_a_case():
    assert {p.stem for p in EXAMPLES.glob("*.py")} - {"common"} == set(CASES) == set(CONTENT)


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_runs_on_the_smoke_preset(name, tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--preset", "smoke", "--quiet",
                           "--out-dir", str(tmp_path), *CASES[name]], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "|---" in done.stdout
    report = json.loads((tmp_path / "smoke.json").read_text())
    assert (report["example"], report["preset"], report["device"]) == (name, "smoke", "cpu")
    assert report["versions"]["torch"] and report["machine"]["cores"] >= 1 and report["results"]
    assert (tmp_path / "smoke.md").read_text().startswith("## smoke")
    assert list(tmp_path.glob("*.png"))
    CONTENT[name](report["results"])
