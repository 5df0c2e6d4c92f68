"""The documentation helpers in tools/: percent-script cells and numpydoc-to-Markdown rewriting."""

import importlib.util
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load(name):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_percent_script_cells_and_title(tmp_path):
    pytest.importorskip("mkdocs")
    examples = load("mkdocs_examples")
    script = tmp_path / "demo.py"
    script.write_text("# %% [markdown]\n# # A title\n#\n# Some *prose*.\n\n# %%\nx = 1\n\n# %%\n\nprint(x)\n")
    assert examples._cells(script.read_text()) == [
        (True, "# A title\n\nSome *prose*."),
        (False, "x = 1"),
        (False, "print(x)"),
    ]
    assert examples._title(script) == "A title"


def test_run_collects_output_and_figures(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("matplotlib")
    examples = load("mkdocs_examples")
    script = tmp_path / "demo.py"
    script.write_text(
        "# %% [markdown]\n# # Demo\n\n# %%\nimport matplotlib.pyplot as plt\nprint('hello')\n"
        "plt.plot([1, 2])\nplt.show()\n"
    )
    parts, images = examples._run(script, tmp_path)
    assert parts[0] == "# Demo"
    assert "```text\nhello\n```" in parts
    assert list(images) == ["demo_1.png"] and images["demo_1.png"].startswith(b"\x89PNG")
    assert parts[-1] == "![Figure 1 of demo](img/demo_1.png)"


def test_numpydoc_roles_and_citations_become_markdown():
    pytest.importorskip("griffe")
    numpydoc = load("griffe_numpydoc")
    text = "Uses :class:`~skannot.MLP` and :func:`f` [1]_.\n\nReferences\n----------\n.. [1] A paper."
    assert numpydoc.to_markdown(text) == (
        'Uses <autoref identifier="skannot.MLP" optional><code>MLP</code></autoref> and '
        '<autoref identifier="f" optional><code>f</code></autoref> [1].\n\n'
        "References\n----------\n- [1] A paper."
    )


def test_stored_full_runs_are_used_while_the_script_is_unchanged(tmp_path, monkeypatch):
    pytest.importorskip("mkdocs")
    pytest.importorskip("matplotlib")
    examples = load("mkdocs_examples")
    (tmp_path / "examples").mkdir()
    script = tmp_path / "examples" / "demo.py"
    script.write_text(
        "# %% [markdown]\n# # Demo\n\n# %%\nimport os\nprint('fast' if os.environ.get('SKANNOT_EXAMPLE_FAST')"
        " == '1' else 'full')\n"
    )
    monkeypatch.setenv("SKANNOT_EXAMPLE_FAST", "1")
    assert examples.stored(script, tmp_path) is None
    examples.store(script, tmp_path)
    parts, images = examples.stored(script, tmp_path)
    assert "```text\nfull\n```" in parts and images == {}  # stored with full settings
    script.write_text(script.read_text() + "\n# %%\nx = 1\n")
    assert examples.stored(script, tmp_path) is None  # a changed script is run again


def test_every_example_has_a_current_full_run_for_the_site():
    pytest.importorskip("mkdocs")
    examples = load("mkdocs_examples")
    root = TOOLS.parent
    stale = [p.name for p in sorted((root / "examples").glob("*.py")) if examples.stored(p, root) is None]
    assert not stale, f"run `python tools/mkdocs_examples.py {' '.join(stale)}` to store their full runs"


def test_the_family_docstring_placeholders_are_filled_in():
    pytest.importorskip("griffe")
    numpydoc = load("griffe_numpydoc")
    text = numpydoc.to_markdown("Parameters\n----------\nalpha : float\n    Mixing.\n{shared_parameters}\n")
    assert "{shared_parameters}" not in text
    assert "\nhidden_sizes : tuple of int, default=(256, 128)\n    Hidden layer widths" in text
