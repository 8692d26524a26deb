"""Write the command line's reference (docs/cli.md) from the parser's own ``--help``, never by hand.

The text between the ``cli-reference`` markers is ``smoothcache --help`` and every command's
``--help`` at a fixed width; ``tests/test_docs.py`` fails when the page and the parser disagree.

    python scripts/cli_reference.py
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from unittest import mock

from smoothcache import cli

PAGE = Path(__file__).parent.parent / "docs" / "cli.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"
#: Terminal width the help is wrapped at, so the page does not depend on who wrote it.
COLUMNS = "100"


def reference() -> str:
    """``smoothcache --help`` and each command's help, as markdown sections."""
    with mock.patch.dict(os.environ, {"COLUMNS": COLUMNS}):
        parser = cli._parser()
        sections = [("smoothcache", parser.format_help())]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                sections += [(f"smoothcache {name}", sub.format_help()) for name, sub in action.choices.items()]
    return "\n\n".join(f"### `{title}`\n\n```text\n{text.strip()}\n```" for title, text in sections)


def written() -> str:
    """The reference as the page holds it now."""
    return PAGE.read_text().split(START, 1)[1].split(END, 1)[0].strip()


def main() -> None:
    page = PAGE.read_text()
    if START not in page or END not in page:
        raise SystemExit(f"{PAGE} has no {START} ... {END} markers")
    head, rest = page.split(START, 1)
    PAGE.write_text(f"{head}{START}\n{reference()}\n{END}{rest.split(END, 1)[1]}")
    print(f"wrote the command reference to {PAGE}")


if __name__ == "__main__":
    main()
