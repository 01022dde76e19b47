"""docs/cli.md names every command and option of `victor` as the code defines them.

The page is the command's own help, written by scripts/cli_reference.py. Its exact text
depends on click's formatting, so this test checks what a reader needs from it instead:
a section for every command, every option in its command's section, and no section for a
command that no longer exists.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from scripts import cli_reference as ref

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "cli.md"


def sections(text: str) -> dict[str, str]:
    """Heading line -> the text under it, up to the next heading."""
    parts = re.split(r"^(#{2,4} `victor[^`]*`)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_command_and_option_is_on_the_page() -> None:
    page = sections(PAGE.read_text(encoding="utf-8"))
    missing = []
    for path, command, _ in ref.commands():
        body = page.get(ref.heading(path))
        if body is None:
            missing.append(" ".join(path))
            continue
        for param in command.params:
            for flag in [*param.opts, *param.secondary_opts]:
                if flag.startswith("-") and not re.search(rf"(?<![\w-]){re.escape(flag)}\b", body):
                    missing.append(f"{' '.join(path)} {flag}")
    assert not missing, f"not in docs/cli.md (run `{ref.COMMAND}`): {missing}"


def test_no_section_for_a_command_that_is_gone() -> None:
    known = {ref.heading(path) for path, _, _ in ref.commands()}
    stale = set(sections(PAGE.read_text(encoding="utf-8"))) - known
    assert not stale, f"docs/cli.md describes commands that no longer exist: {stale}"


def test_the_script_writes_a_page_that_passes(tmp_path: Path) -> None:
    """The script's own page has every command; --check tells a stale page from a current one."""
    page = tmp_path / "cli.md"
    run = [sys.executable, "-m", "scripts.cli_reference", "--output", str(page)]
    subprocess.run(run, cwd=ROOT, check=True, capture_output=True, timeout=120)
    written = page.read_text(encoding="utf-8")
    assert set(sections(written)) == {ref.heading(path) for path, _, _ in ref.commands()}
    check = subprocess.run([*run, "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout
    page.write_text(written.replace("--batch", "--batches", 1), encoding="utf-8")
    stale = subprocess.run([*run, "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert stale.returncode == 1 and ref.COMMAND in stale.stdout, stale.stdout
