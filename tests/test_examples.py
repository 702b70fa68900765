"""Every example script runs on the smoke preset and writes its table, JSON and figure."""
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


def test_every_example_has_a_case():
    assert {p.stem for p in EXAMPLES.glob("*.py")} - {"common"} == set(CASES)


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
