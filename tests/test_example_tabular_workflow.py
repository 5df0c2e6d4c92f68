"""The tabular workflow example runs end to end (briefly trained)."""

import runpy
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "examples" / "plot_tabular_workflow.py"


def test_tabular_workflow_example_runs(monkeypatch, capsys):
    monkeypatch.setenv("SKANNOT_EXAMPLE_FAST", "1")
    namespace = runpy.run_path(str(EXAMPLE), run_name="__main__")
    search, model = namespace["search"], namespace["model"]
    assert set(search.cv_results_["param_annotmixclassifier__alpha"]) == {0.0, 0.5, 1.0, 2.0}
    assert sorted(model.annotator_names_) == [f"worker-{m}" for m in range(8)]
    assert model.annotator_confusion_.shape == (8, 3, 3)
    assert "annot-mix on test wines" in capsys.readouterr().out
