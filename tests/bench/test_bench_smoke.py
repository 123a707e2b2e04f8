"""The benchmark runs end to end in its quick mode and reports every section (never its speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_bench_writes_every_section(tmp_path: Path) -> None:
    output, plot = tmp_path / "BENCHMARKS.md", tmp_path / "plot.png"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output), "--plot", str(plot)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    text = output.read_text()
    for number in range(1, 12):
        assert f"\n## {number}. " in text
        assert f"\n| {number} | " in text
    for fact in ("- Machine: ", "- Date: ", "- Versions: Python", "httpx", "xllamacpp"):
        assert fact in text
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert "| # | measurement |" in done.stdout
