"""Every example runs, with reduced settings (SKANNOT_EXAMPLE_FAST=1), from the repository root."""

import runpy
from pathlib import Path

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skannot.datasets import _music_genres, get_data_home  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [
    "plot_music_genres.py",
    "plot_simulated_annotators.py",
    "plot_choose_alpha.py",
    "plot_choose_method.py",
]
#: The examples that read Music Genres.
MUSIC_GENRES = {"plot_music_genres.py", "plot_choose_method.py"}


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs(name, monkeypatch):
    if name in MUSIC_GENRES and _music_genres._find_csv_folder(get_data_home()) is None:
        pytest.skip(
            f"the Music Genres files are not in the data home {get_data_home()} and CI has no "
            "internet; set SKANNOT_DATA to a folder holding them (CI uses ../shared/data)"
        )
    monkeypatch.setenv("SKANNOT_EXAMPLE_FAST", "1")
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: None)
    try:
        runpy.run_path(str(ROOT / "examples" / name), run_name="__main__")
        assert plt.get_fignums(), f"{name} drew no figure"
    finally:
        plt.close("all")
