"""Memory and fds per pending flow (10,000 flows, both libraries; 100,000 for fedbearer), each
library in fresh subprocesses (`_memory_worker.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from _timing import Figure, Sample

HERE = os.path.dirname(os.path.abspath(__file__))


def _worker(library: str, n: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "_memory_worker.py"), library, str(n)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"memory worker {library} {n} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[Figure]:
    rounds = 1 if quick else 2
    runs: dict[str, list[dict[str, Any]]] = {"reference": [], "fedbearer": [], "bare": []}
    for i in range(rounds):
        order = list(runs) if i % 2 == 0 else list(runs)[::-1]
        for library in order:
            runs[library].append(_worker(library, 10_000))
    big = _worker("fedbearer", 100_000)

    def sample(library: str, key: str) -> Sample:
        return Sample([r[key] for r in runs[library]])

    ref_b, fed_b, bare_b = (
        sample("reference", "bytes_per_flow"),
        sample("fedbearer", "bytes_per_flow"),
        sample("bare", "bytes_per_flow"),
    )
    ref_fd, fed_fd = sample("reference", "fd_delta"), sample("fedbearer", "fd_delta")
    fed_runs = runs["fedbearer"]
    completed_10k = all(r["completed"] == r["n"] for r in fed_runs)
    return [
        Figure(
            "memory",
            "memory per pending flow (RSS delta over 10,000 pending `fetch()` tasks)",
            "B",
            ref_b,
            fed_b,
            target="≤ 2 KB",
            met=fed_b.median <= 2048,
            note=f"callers' tasks and Receivers included; a bare asyncio task awaiting a future: "
            f"{bare_b.median:.0f} B; fedbearer's 10,000 flows all completed: {completed_10k}",
            extra={"runs": runs},
        ),
        Figure(
            "fds",
            "file descriptors for 10,000 pending flows (total)",
            "fd",
            ref_fd,
            fed_fd,
            target="0 per flow (the listener's own 1–2 sockets in total)",
            # In total: the listener's two sockets (127.0.0.1 and [::1]) and the event loop's
            # wake-up socket pair; the same at 10,000 and 100,000 flows (see flows_100k).
            met=fed_fd.max <= 4 and big["fd_delta"] == fed_fd.max,
            note="fedbearer's total: the listener's 2 sockets + 1 wake-up socket pair per event loop, "
            "whatever the number of flows",
        ),
        Figure(
            "flows_100k",
            "100,000 pending flows on one listener: memory per flow",
            "B",
            None,
            Sample([big["bytes_per_flow"]]),
            target="works, each still completes",
            met=big["completed"] == big["n"] and big["fd_delta"] <= 4,
            note=f"{big['completed']:,} of {big['n']:,} completed ({big['real_gets_ok']:,} by real loopback "
            f"GETs, the rest by `listener.deliver(url)`; token endpoint stubbed); fds +{big['fd_delta']}; "
            f"setup {big['setup_seconds']:.1f} s, completion {big['complete_seconds']:.1f} s; "
            "reference: not feasible (1 fd per flow)",
            extra=big,
        ),
    ]
