"""MkDocs hook: run the scripts in ``examples/`` and publish them as pages with their output and figures.

The examples are jupytext "percent" scripts: ``# %% [markdown]`` cells become
prose, ``# %%`` cells are executed in one namespace, from the repository root,
and shown with what they print and the figures they leave open. Nothing is
downloaded and no Jupyter kernel is needed.

The pages show the output of a full run (full settings), kept in
``docs/examples_output/``: ``python tools/mkdocs_examples.py`` runs every
example with full settings and stores what it printed and drew, keyed by the
script's hash, so the site build (CI's included) shows real results without
training anything. An example whose script changed since its stored run is
run at build time instead; with ``SKANNOT_EXAMPLE_FAST=1`` (as in CI) that run
uses reduced settings and its page says so (``tests/test_docs_tools.py``
fails until the stored output is refreshed).

The ``Examples`` entry of the nav (pointing at ``examples/index.md``) is
expanded to an overview page and one page per script.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import json
import os
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

EXAMPLES = "examples"
#: Folder (relative to the repository root) of the stored full-run outputs.
STORE = Path("docs") / "examples_output"
_CELL = re.compile(r"^# %%(?P<markdown> \[markdown\])?.*$", re.MULTILINE)
_cache = {}


def _scripts(config):
    root = Path(config.config_file_path).parent
    return root, sorted((root / EXAMPLES).glob("*.py"))


def _cells(source):
    """``(is_markdown, text)`` for every cell of a percent-format script."""
    marks = list(_CELL.finditer(source))
    cells = []
    for mark, following in zip(marks, marks[1:] + [None]):
        body = source[mark.end() : following.start() if following else len(source)].strip("\n")
        if mark["markdown"]:
            body = "\n".join(re.sub(r"^# ?", "", line) for line in body.splitlines())
        if body.strip():
            cells.append((bool(mark["markdown"]), body))
    return cells


def _title(path):
    for is_markdown, text in _cells(path.read_text()):
        if is_markdown:
            heading = re.search(r"^# (.+)$", text, re.MULTILINE)
            if heading:
                return heading[1].strip()
    return path.stem


def _run(path, root):
    """Markdown of the executed script and its figures as ``{file name: PNG bytes}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    namespace = {"__name__": "__main__", "__file__": str(path)}
    parts, images = [], {}
    show = plt.show
    plt.show = lambda *args, **kwargs: None
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for is_markdown, text in _cells(path.read_text()):
            if is_markdown:
                parts.append(text)
                continue
            parts.append(f"```python\n{text}\n```")
            output = io.StringIO()
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                exec(compile(text, str(path), "exec"), namespace)
            if output.getvalue().strip():
                parts.append(f"```text\n{output.getvalue().rstrip()}\n```")
            for number in plt.get_fignums():
                buffer = io.BytesIO()
                plt.figure(number).savefig(buffer, format="png", dpi=90, bbox_inches="tight")
                name = f"{path.stem}_{len(images) + 1}.png"
                images[name] = buffer.getvalue()
                parts.append(f"![Figure {len(images)} of {path.stem}](img/{name})")
            plt.close("all")
    finally:
        plt.show = show
        os.chdir(cwd)
    return parts, images


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stored(path, root):
    """The stored full-run ``(parts, images)`` of the script ``path``, or None when absent or stale."""
    record = root / STORE / f"{path.stem}.json"
    if not record.exists():
        return None
    data = json.loads(record.read_text())
    if data["sha256"] != _digest(path):
        return None
    return data["parts"], {name: base64.b64decode(png) for name, png in data["images"].items()}


def store(path, root):
    """Run the script ``path`` with full settings and store what it printed and drew."""
    previous = os.environ.pop("SKANNOT_EXAMPLE_FAST", None)
    try:
        parts, images = _run(path, root)
    finally:
        if previous is not None:
            os.environ["SKANNOT_EXAMPLE_FAST"] = previous
    record = root / STORE / f"{path.stem}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    images_text = {name: base64.b64encode(png).decode() for name, png in images.items()}
    record.write_text(json.dumps({"sha256": _digest(path), "parts": parts, "images": images_text}, indent=1))
    return record


def on_config(config):
    """Expand the nav's ``Examples: examples/index.md`` entry into one page per script."""
    _, scripts = _scripts(config)
    pages = [f"{EXAMPLES}/index.md"] + [{_title(p): f"{EXAMPLES}/{p.stem}.md"} for p in scripts]
    for i, item in enumerate(config.nav or []):
        if isinstance(item, dict) and item.get("Examples") == f"{EXAMPLES}/index.md":
            config.nav[i] = {"Examples": pages}
    return config


def on_files(files, config):
    root, scripts = _scripts(config)
    fast = os.environ.get("SKANNOT_EXAMPLE_FAST") == "1"
    overview = [
        "# Examples",
        "",
        "Runnable scripts in the repository's `examples/` folder, in jupytext's percent format: "
        "run them with `python examples/NAME.py`, or open them as notebooks with jupytext. "
        "Set `SKANNOT_EXAMPLE_FAST=1` for a quick run with reduced settings.",
        "",
    ]
    for path in scripts:
        source = path.read_text()
        kept = stored(path, root)
        key = (path.name, hashlib.sha256(source.encode()).hexdigest(), fast and kept is None)
        if key not in _cache:
            _cache[key] = kept if kept is not None else _run(path, root)
        parts, images = _cache[key]
        note = (
            '!!! note "Reduced settings"\n    This page was built with `SKANNOT_EXAMPLE_FAST=1`: '
            "few epochs and small data, so the numbers and figures are not representative. "
            "`python tools/mkdocs_examples.py` stores a full run for the site.\n"
            if fast and kept is None
            else ""
        )
        download = f"Download the script: [`{path.name}`]({path.name})\n"
        page = "\n\n".join([parts[0], note + download, *parts[1:]]) + "\n"
        files.append(File.generated(config, f"{EXAMPLES}/{path.stem}.md", content=page))
        files.append(File.generated(config, f"{EXAMPLES}/{path.name}", content=source))
        for name, png in images.items():
            files.append(File.generated(config, f"{EXAMPLES}/img/{name}", content=png))
        overview.append(f"- [{_title(path)}]({path.stem}.md)")
    files.append(File.generated(config, f"{EXAMPLES}/index.md", content="\n".join(overview) + "\n"))
    return files


def main(argv=None):
    """Run the examples with full settings and store their output for the site."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("names", nargs="*", help="example file names (all by default)")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / EXAMPLES).glob("*.py")):
        if args.names and path.name not in args.names:
            continue
        print(f"running {path.name} with full settings ...", flush=True)
        print(f"  stored {store(path, root).relative_to(root)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
