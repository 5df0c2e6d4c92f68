"""The recipes of the model-selection page run as written, on the forms of Z users have."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skannot.annotations import long_to_matrix

PAGE = Path(__file__).parents[1] / "docs" / "user_guide" / "model_selection.md"


def recipes():
    """The page's ```python blocks, in order."""
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


def crowd_export(n_tasks=80, n_workers=4, seed=0):
    """Features indexed by task and a long-format export of noisy integer labels (some tasks unlabelled)."""
    rng = np.random.default_rng(seed)
    tasks = [f"song{i}" for i in range(n_tasks)]
    y = rng.integers(0, 3, n_tasks)
    X = pd.DataFrame(np.eye(3)[y] * 2 + rng.normal(size=(n_tasks, 3)), index=pd.Index(tasks, name="task"))
    X.columns = ["f0", "f1", "f2"]
    rows = [
        (tasks[i], f"w{m}", int(y[i]) if rng.random() < 0.75 else int(rng.integers(0, 3)))
        for i in range(n_tasks - 5)
        for m in range(n_workers)
        if rng.random() < 0.6 or m == i % n_workers
    ]
    return X, pd.DataFrame(rows, columns=["task", "worker", "label"])


def test_the_page_has_recipes():
    assert len(recipes()) >= 3


def test_every_recipe_of_the_model_selection_page_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a recipe writes checkpoints into the working directory
    X, export = crowd_export()
    Z = long_to_matrix(export, tasks=X.index)  # NaN where missing: an int cv cannot take it
    namespace = {"X": X, "Z": Z, "export": export}
    for code in recipes():
        exec(compile(code, str(PAGE), "exec"), namespace)  # noqa: S102


def test_an_int_cv_fails_on_nan_coded_annotations_as_the_page_says():
    from sklearn.model_selection import cross_val_score

    from skannot import AnnotMixClassifier

    X, export = crowd_export()
    with pytest.raises(ValueError, match="Input y contains NaN"):
        cross_val_score(AnnotMixClassifier(max_epochs=1), X, long_to_matrix(export, tasks=X.index), cv=2)
    strings = export.assign(label=export["label"].map(str))
    with pytest.raises(TypeError, match="'<' not supported"):
        cross_val_score(AnnotMixClassifier(max_epochs=1), X, long_to_matrix(strings, tasks=X.index), cv=2)
