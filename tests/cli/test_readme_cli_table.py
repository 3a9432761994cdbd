"""README's command table names every command of the typer app, and each row its real options."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main

from memoryos_core.app.cli import STORE_OPTIONS, app
from memoryos_core.bench.cli import bench_app

README = Path(__file__).resolve().parents[2] / "README.md"
STORE = {"--" + name.replace("_", "-") for name in STORE_OPTIONS}
"""What "store options" stands for in the table."""


def real_commands() -> dict[str, tuple[set[str], list[str]]]:
    """Each command (``"recall"``, ``"bench locomo"``, ``""`` for the root) -> (options, arguments)."""

    def described(command: Any) -> tuple[set[str], list[str]]:
        options = {
            "/".join(p.opts + p.secondary_opts)
            for p in command.params
            if p.param_type_name == "option" and not p.hidden
        }
        arguments = [p.name.upper() for p in command.params if p.param_type_name == "argument"]
        return options, arguments

    root = typer.main.get_command(app)
    found = {"": described(root)}
    commands = root.commands.items()  # type: ignore[attr-defined]
    found |= {name: described(command) for name, command in commands if not hasattr(command, "commands")}
    bench = typer.main.get_command(bench_app)
    found |= {f"bench {name}": described(command) for name, command in bench.commands.items()}  # type: ignore[attr-defined]
    return found


def readme_rows() -> dict[str, tuple[set[str], str]]:
    """Each row of the "Command line" table: command -> (the options its cell states, its usage cell)."""
    section = README.read_text(encoding="utf-8").split("\n## Command line\n")[1].split("\n## ")[0]
    rows: dict[str, tuple[set[str], str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("| `memoryos") or len(cells) != 3:
            continue
        usage, options_cell = cells[0].strip("`"), cells[1]
        words = usage.split()[1:]
        name = " ".join(w for w in words[:2] if re.fullmatch(r"[a-z]+", w)) if words[0] != "--version" else ""
        stated = set(re.findall(r"`(--[a-z][-a-z/]*)`", options_cell))
        if not name:  # the root's options are the row's command: `memoryos --version`
            stated = set(re.findall(r"--[a-z][-a-z]*", usage))
        if options_cell.startswith("store options"):
            stated |= STORE
            stated -= set(re.findall(r"store options but `(--[a-z-]+)`", options_cell))
        rows[name] = (stated, usage)
    return rows


def test_the_readme_table_lists_every_command_with_its_real_options() -> None:
    real, stated = real_commands(), readme_rows()
    assert "bench locomo" in real and "users" in real  # the walk sees the commands it must
    assert sorted(stated) == sorted(real), "README's command table and the app's commands differ"
    wrong = []
    for name, (options, arguments) in real.items():
        if name == "":
            options -= {"--help"}
            arguments = []
        if stated[name][0] != options:
            wrong.append(
                f"memoryos {name}: README says {sorted(stated[name][0])}, the command has {sorted(options)}"
            )
        usage = stated[name][1]
        missing = [a for a in arguments if a not in usage and a.replace("_", "-") not in usage]
        if missing:
            wrong.append(f"memoryos {name}: arguments {missing} not in {usage!r}")
    assert not wrong, "\n".join(wrong)
