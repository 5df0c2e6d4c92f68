"""Writing a benchmark's numbers into the docs.

Every benchmark prints its tables and can write them into a page of
``docs/`` between a pair of markers,

    <!-- NAME:begin -->
    ... replaced by the benchmark ...
    <!-- NAME:end -->

so that running it again replaces its own numbers and nothing else.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path


def run_block(table, command, machine):
    """A printed table as a docs block: its ``### title`` in bold with the command, machine and date.

    Parameters
    ----------
    table : str
        Markdown whose first line is ``### title`` and the rest the table.
    command : str
        The command line that produced it.
    machine : str
        A description of the machine it ran on.

    Returns
    -------
    block : str
    """
    title, body = table.split("\n", 1)
    return f"**{title.removeprefix('### ')}**: `{command}`; {machine}; {date.today()}.\n{body}"


def write_block(page, name, text, required=True):
    """Replace what stands between the ``NAME`` markers of ``page`` by ``text``.

    Parameters
    ----------
    page : str or Path
        The Markdown file.
    name : str
        The markers' name: ``<!-- name:begin -->`` and ``<!-- name:end -->``.
    text : str
        The new content (a table, with whatever lines go with it).
    required : bool, default=True
        Whether a page without the markers is an error; if not, the block
        is skipped with a message.

    Returns
    -------
    written : bool

    Raises
    ------
    SystemExit
        When ``required`` and the page lacks the markers, with the lines to add.
    """
    page = Path(page)
    content, found = re.subn(
        rf"(<!-- {re.escape(name)}:begin -->\n).*?(<!-- {re.escape(name)}:end -->)",
        lambda m: m.group(1) + text.rstrip("\n") + "\n" + m.group(2),
        page.read_text(),
        flags=re.S,
    )
    if not found:
        message = (
            f"{page} has no markers for {name!r}: add the lines <!-- {name}:begin --> and "
            f"<!-- {name}:end --> where the table goes."
        )
        if required:
            raise SystemExit(message)
        print(message, "Not written.")
        return False
    page.write_text(content)
    print(f"{name} written to {page}")
    return True
