"""``python -m skannot``, the main job, runs end to end (one epoch, about 10 s)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_main_job_runs_and_prints_its_report():
    # The checkout under test first on the path, whatever is installed.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "skannot", "--epochs", "1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("digits: 1257 training images, 3771 noisy labels from 10 annotators")
    methods = [line for line in lines if line.startswith(("annot-mix", "MLP on"))]
    rows = {line[:32].strip(): line[32:].split() for line in methods}
    assert set(rows) == {"annot-mix (AnnotMixClassifier)", "MLP on majority vote"}
    for accuracy, fit_time in rows.values():
        assert 0 <= float(accuracy) <= 1 and float(fit_time) >= 0
    annotators = [line.split() for line in lines if line[:1].isdigit()]
    assert [int(row[0]) for row in annotators] == list(range(10))
    assert lines[-1].startswith("Spearman correlation of estimated and true annotator accuracy:")
