"""Griffe extension: render the reStructuredText bits of numpydoc docstrings as Markdown.

The docstrings follow numpydoc, so they also read well in ``help()`` and in
Sphinx. For the MkDocs site, ``:class:`~skannot.MLP``` and friends become
cross-references (plain code when the target is not documented) and
``.. [1]`` citations become a list. The ``{shared_parameters}`` and
``{shared_attributes}`` placeholders of the family's class docstrings, which
the classes fill in at import time, are filled in here too, since griffe
reads the source.
"""

from __future__ import annotations

import re
import textwrap

import griffe

from skannot._base import SHARED_ATTRIBUTES, SHARED_PARAMETERS

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|obj|data):`(?P<tilde>~?)(?P<target>[\w.]+)`")
_CITATION = re.compile(r"^(?P<indent>\s*)\.\. \[(?P<label>\w+)\] ", re.MULTILINE)
_CITED = re.compile(r"\[(?P<label>\w+)\]_")


def _role(match):
    target = match["target"]
    shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
    return f'<autoref identifier="{target}" optional><code>{shown}</code></autoref>'


#: The family's docstring placeholders and their text, dedented as griffe holds docstrings.
_SHARED = {
    "{shared_parameters}": textwrap.dedent(SHARED_PARAMETERS),
    "{shared_attributes}": textwrap.dedent(SHARED_ATTRIBUTES),
}


def to_markdown(text):
    """Docstring text with the shared sections filled in and roles, citations and their labels in Markdown."""
    for placeholder, shared in _SHARED.items():
        text = re.sub(rf"^[ ]*{re.escape(placeholder)}$", lambda _, shared=shared: shared, text, flags=re.M)
    text = _ROLE.sub(_role, text)
    text = _CITATION.sub(lambda m: f"{m['indent']}- [{m['label']}] ", text)
    return _CITED.sub(lambda m: f"[{m['label']}]", text)


class NumpydocToMarkdown(griffe.Extension):
    """Rewrite every docstring once the object tree is complete."""

    def on_object(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
