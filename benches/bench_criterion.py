"""The Rust core's criterion suite (`benches/core.rs`), run and parsed."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any

from _timing import Figure, Sample

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_UNITS = {"ps": 1e-12, "ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
_LINE = re.compile(
    r"^(?P<name>[\w/.-]+)\s+time:\s+\[(?P<lo>[\d.]+) (?P<lou>\S+) (?P<mid>[\d.]+) (?P<midu>\S+) "
    r"(?P<hi>[\d.]+) (?P<hiu>\S+)\]",
    re.MULTILINE,
)
TITLES = {
    "pkce_pair_and_state": "Rust core: PKCE pair + state",
    "os_random_two_calls_32_24": "Rust core: OS random, two calls (32 + 24 bytes)",
    "os_random_one_call_56": "Rust core: OS random, one call (56 bytes)",
    "parse_callback_query": "Rust core: callback query parse",
    "parse_token_response_1k": "Rust core: token response parse (1 KB)",
}


def parse(output: str) -> dict[str, dict[str, float]]:
    """criterion's `name time: [low estimate high]` lines, in seconds."""
    # A long name is printed on a line of its own, the figures on the next one.
    text = re.sub(r"^([\w/.-]+)\n\s+time:", r"\1 time:", output, flags=re.MULTILINE)
    found = {}
    for m in _LINE.finditer(text):
        found[m["name"]] = {
            "low": float(m["lo"]) * _UNITS[m["lou"]],
            "estimate": float(m["mid"]) * _UNITS[m["midu"]],
            "high": float(m["hi"]) * _UNITS[m["hiu"]],
        }
    return found


def run(quick: bool = False, env: dict[str, str] | None = None) -> tuple[list[Figure], dict[str, Any]]:
    measure = "2" if quick else "3"
    cmd = [
        "cargo", "bench", "--no-default-features", "--bench", "core", "--",
        "--warm-up-time", "1", "--measurement-time", measure,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return [], {"error": proc.stderr[-2000:], "command": " ".join(cmd)}
    results = parse(proc.stdout)
    figures = [
        Figure(
            f"criterion_{name}",
            TITLES.get(name, f"Rust core: {name}"),
            "s",
            None,
            Sample([r["estimate"]]),
            note=f"criterion 95% interval {r['low'] * 1e9:.0f}–{r['high'] * 1e9:.0f} ns",
            extra=r,
        )
        for name, r in results.items()
    ]
    return figures, {"command": " ".join(cmd)}
