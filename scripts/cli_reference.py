"""Writes docs/cli.md from the `victor` command's own help.

    python -m scripts.cli_reference           # rewrite docs/cli.md
    python -m scripts.cli_reference --check   # exit 1 when the committed page is stale

Every command and option with the help text written in the code, as `victor COMMAND --help`
prints it, so the reference cannot drift from what the command accepts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from scripts import generated_page
from victor.cli import cli

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "cli.md"
COMMAND = "python -m scripts.cli_reference"
WIDTH = 100  # the help's line width, fixed: the page must not depend on the terminal

HEADER = f"""# The `victor` command

Every command and option, as `victor COMMAND --help` prints it, written from the code by
`{COMMAND}`; `tests/test_cli_reference.py` fails when a command or an option is missing
here. What the commands are for, in everyday order: [README.md](../README.md#everyday-use);
the environment variables they read: [configuration.md](configuration.md).
"""


def commands(
    command: click.Command = cli,
    path: tuple[str, ...] = ("victor",),
    parent: click.Context | None = None,
) -> list[tuple[tuple[str, ...], click.Command, str]]:
    """(path, command, help text) of `command` and of every subcommand, depth first, by name."""
    ctx = click.Context(
        command, info_name=path[-1], parent=parent, terminal_width=WIDTH, max_content_width=WIDTH
    )
    found = [(path, command, command.get_help(ctx))]
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                found += commands(sub, (*path, name), ctx)
    return found


def heading(path: tuple[str, ...]) -> str:
    return f"{'#' * min(len(path) + 1, 4)} `{' '.join(path)}`"


def render() -> str:
    parts = [HEADER]
    for path, _, text in commands():
        parts.append(f"{heading(path)}\n\n```\n{text.rstrip()}\n```\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    return generated_page.main(argv, command=COMMAND, doc=__doc__, output=OUTPUT, text=render())


if __name__ == "__main__":
    sys.exit(main())
