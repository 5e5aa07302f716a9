"""Writes `docs/benchmarks.md` (machine, table) and `docs/benchmarks.png` (ratios, log scale)."""

from __future__ import annotations

import os
from typing import Any

from _timing import Figure, fmt, minmed

_MET = {True: "✅ yes", False: "❌ no", None: "—"}


def _ratio_text(f: Figure) -> str:
    ratio = f.ratio
    if ratio is None:
        return "—"
    return f"{ratio:.3g}×"


def _row(f: Figure) -> str:
    if f.key.startswith("criterion_"):
        fed = f"{fmt(f.extra['estimate'], 's')} ({fmt(f.extra['low'], 's')}–{fmt(f.extra['high'], 's')})"
    else:
        fed = minmed(f.fedbearer, f.unit)
    ref = minmed(f.reference, f.unit)
    return f"| {f.title} | {ref} | {fed} | {_ratio_text(f)} | {f.target} | {_MET[f.met]} |"


def write_markdown(path: str, figures: list[Figure], machine: dict[str, str], meta: dict[str, Any]) -> None:
    main = [f for f in figures if not f.key.startswith("criterion_")]
    rust = [f for f in figures if f.key.startswith("criterion_")]
    targeted = [f for f in main if f.met is not None]
    met = sum(1 for f in targeted if f.met)
    lines = [
        "# Benchmarks: fedbearer side by side with the reference SDK",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} (run time {meta['elapsed']:.0f} s). "
        "Do not edit by hand.",
        "",
        "Both libraries run in the same process or the same run, interleaved round by round (the order "
        "alternating), so noise on this shared machine hits both alike. Each cell is **min / median** over "
        "the rounds; **ratio** is fedbearer ÷ reference of the medians (below 1 is better, except for "
        "throughput). Only ratios within one run are comparable; absolute times move by up to 1.5× "
        "between runs here.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in machine.items()],
        "| 1-min load at each section's start | "
        + ", ".join(f"{k} {v}" for k, v in meta.get("load_at_section_start", {}).items())
        + " |",
        "",
        f"## Results: {met} of {len(targeted)} targets met",
        "",
        "| figure | reference (nebius) | fedbearer | ratio | target | met? |",
        "| --- | --- | --- | --- | --- | --- |",
        *[_row(f) for f in main],
        "",
        "![fedbearer vs the reference, times better (log scale)](benchmarks.png)",
        "",
        "## Rust core (criterion, `cargo bench --no-default-features --bench core`)",
        "",
    ]
    if rust:
        lines += [
            "| bench | estimate (95% interval) |",
            "| --- | --- |",
            *[
                f"| {f.title} | {fmt(f.extra['estimate'], 's')} "
                f"({fmt(f.extra['low'], 's')}–{fmt(f.extra['high'], 's')}) |"
                for f in rust
            ],
        ]
    else:
        lines.append(f"Not run: {meta.get('criterion', {}).get('error', 'skipped')}")
    lines += ["", "## How each figure is taken", ""]
    lines += [f"- **{f.title}**: {f.note}" for f in main if f.note]
    lines += [
        "",
        "Reference SDK: `nebius` "
        f"{machine.get('nebius', '?')}; its cache lives in a temporary `HOME` for the run, never the "
        "user's `~/.nebius`. Raw figures: `benches/results.json`.",
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def write_chart(path: str, figures: list[Figure]) -> str | None:
    """A bar per figure with both libraries: how many times better fedbearer is (log scale)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed; no chart"
    bars = [(f.title, f.advantage, f.met) for f in figures if f.advantage is not None]
    if not bars:
        return "no ratios to chart"
    height = 0.55 * len(bars) + 1.6
    fig, ax = plt.subplots(figsize=(10, height))
    labels = [_short(t) for t, _, _ in bars]
    values = [a for _, a, _ in bars]
    colors = ["#2e7d32" if m else ("#c62828" if m is False else "#607d8b") for _, _, m in bars]
    ypos = list(range(len(bars)))[::-1]
    ax.barh(ypos, values, color=colors)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(ypos)
    ax.set_yticklabels(labels, fontsize=8)
    for y, v in zip(ypos, values, strict=True):
        ax.text(v, y, f" {v:.3g}×", va="center", fontsize=8)
    ax.set_xlabel("times better than the reference SDK (median; log scale; >1 = fedbearer better)")
    ax.set_title(
        "fedbearer vs nebius reference (green: target met, red: missed, grey: no target)", fontsize=9
    )
    ax.set_xlim(left=min(0.5, min(values) / 2), right=max(values) * 4)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def _short(title: str) -> str:
    return title if len(title) <= 60 else title[:57] + "…"
