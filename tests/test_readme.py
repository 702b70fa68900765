"""The README's promises: its Python snippet runs exactly as written, its size stays a guide's, and the
files it links exist."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_python_snippet_runs_as_written(tmp_path):
    snippet = re.search(r"## Python\n.*?```python\n(.*?)```", README, re.S).group(1)
    run = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "DCU_QUIET": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    before, after, unseen = (float(x) for x in re.search(r"forget-set loss ([0-9.]+) -> ([0-9.]+) .*unseen images: "
                                                         r"([0-9.]+)", run.stdout).groups())
    assert before < unseen and before < after             # memorised, then moved towards unseen images' loss


def test_the_readme_is_a_guide_and_its_links_exist():
    assert len(README.encode()) <= 12 * 1024
    for link in re.findall(r"\]\(([^)#]+)\)", README):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link
    quick = re.search(r"## Quick start\n(.*?)\n## ", README, re.S).group(1)
    commands = re.findall(r"```bash\n(.*?)\n```", quick, re.S)
    assert len(commands) == 2
    assert commands[1].split("&&")[-1].strip() in (ROOT / ".ci" / "run").read_text()
