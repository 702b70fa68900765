"""The GPU benchmark script runs end to end on the CPU in its tiny form (the form CI can check)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_runs_tiny_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--tiny", "--quiet",
                    "--out", str(out)], check=True, timeout=600, cwd=tmp_path)
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["tiny"]
    assert all(t["images_per_second"] > 0 for t in result["throughput"])
    assert result["dm"]["iterations_per_second"] > 0
    assert set(result["dcu_vs_retrain"]["methods"]) == {"retrain", "dcu"} and result["dcu_vs_retrain"]["rte"] > 0
