"""Every example runs, with reduced settings (SKANNOT_EXAMPLE_FAST=1), from the repository root."""

import runpy
from pathlib import Path

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MUSIC_GENRES = ROOT.parent / "shared" / "data" / "music_genres"
EXAMPLES = ["plot_music_genres.py", "plot_simulated_annotators.py", "plot_choose_alpha.py"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs(name, monkeypatch):
    if name == "plot_music_genres.py" and not MUSIC_GENRES.is_dir():
        pytest.skip("the Music Genres files are not next to the repository and CI has no internet")
    monkeypatch.setenv("SKANNOT_EXAMPLE_FAST", "1")
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: None)
    try:
        runpy.run_path(str(ROOT / "examples" / name), run_name="__main__")
        assert plt.get_fignums(), f"{name} drew no figure"
    finally:
        plt.close("all")
