"""docs/configuration.md is what scripts/config_reference.py makes of the code today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scripts import config_reference as ref

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, "-m", "scripts.config_reference"]


def check(output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "--check", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_committed_reference_is_current() -> None:
    result = check(ROOT / "docs" / "configuration.md")
    assert result.returncode == 0, (
        "docs/configuration.md differs from the settings and valve models in the code. "
        f"Regenerate it: {ref.COMMAND}\n{result.stdout}{result.stderr}"
    )


def test_a_stale_reference_fails_the_check(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    current = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    stale.write_text(current.replace("| `VICTOR_EMBED_MODEL` |", "| `VICTOR_EMBED_MODE` |", 1))
    result = check(stale)
    assert result.returncode == 1
    assert ref.COMMAND in result.stdout
    assert "+| `VICTOR_EMBED_MODEL` |" in result.stdout  # the diff shows what the code says


def test_every_model_is_found_and_documented_with_its_real_default() -> None:
    from indexer.config import Settings

    text, _ = ref.render()
    for name, field in Settings.model_fields.items():
        if name in ("data_dir",):
            continue
        rows = [line for line in text.splitlines() if line.startswith("| ")]
        row = next(line for line in rows if f"`VICTOR_{name.upper()}`" in line)
        default = ref.default_text(Settings, name, field)
        assert f"| {default} |" in row
    assert "`VICTOR_LITELLM_MIN_SCORE`" in text
    assert "| `min_score` | float, ≥ 0, ≤ 1 | `0.25` |" in text
    assert "~/.local/share/victor" in text and str(Path.home()) not in text
