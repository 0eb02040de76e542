"""benchmarks/RESULTS.md: each benchmark script owns one "## Heading" section and rewrites only it."""
from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(section: str) -> None:
    """Replace the section whose first line (its "## " heading) `section` starts with, up to the next
    "## " heading, or append it; every other section stays as it is."""
    heading = section.split("\n", 1)[0]
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    body = section.rstrip("\n") + "\n"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + body + (text[end:] if end >= 0 else "")
    RESULTS.write_text(text)
