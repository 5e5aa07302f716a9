"""Import cost of what a login needs, in fresh interpreters: wall time minus `python -c pass`."""

from __future__ import annotations

import subprocess
import sys
import time

from _timing import Figure, Sample, interleave

FEDBEARER = "import fedbearer.federation, fedbearer.federation.auth"
REFERENCE = "import nebius.aio.token.federation_bearer, nebius.aio.token.federation_bearer.auth"


def _wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def _net(samples: dict[str, Sample], name: str, base: str) -> Sample:
    # Each round's figure minus the same round's baseline: noise shared by both cancels out.
    return Sample([max(0.0, v - b) for v, b in zip(samples[name].values, samples[base].values, strict=True)])


def run(quick: bool = False) -> list[Figure]:
    codes = {
        "pass": "pass",
        "reference": REFERENCE,
        "fedbearer": FEDBEARER,
        "asyncio": "import asyncio",
        "reference+asyncio": f"import asyncio; {REFERENCE}",
        "fedbearer+asyncio": f"import asyncio; {FEDBEARER}",
    }
    for code in codes.values():  # compile the .pyc files; fill the page cache
        _wall(code)
    samples = interleave(
        7 if quick else 15, {name: (lambda c=code: _wall(c)) for name, code in codes.items()}
    )
    ref, fed = _net(samples, "reference", "pass"), _net(samples, "fedbearer", "pass")
    ref_async = _net(samples, "reference+asyncio", "asyncio")
    fed_async = _net(samples, "fedbearer+asyncio", "asyncio")
    return [
        Figure(
            "import",
            "import cost of a login (`federation` + its auth module), minus `python -c pass`",
            "s",
            ref,
            fed,
            target="≤ 20 ms",
            met=fed.median <= 20e-3,
            note="fresh interpreters; `python -c pass` itself: "
            f"{samples['pass'].median * 1e3:.1f} ms (median)",
        ),
        Figure(
            "import_asyncio",
            "same, in a process that has already imported asyncio (minus `import asyncio`)",
            "s",
            ref_async,
            fed_async,
            note=f"`import asyncio` alone: "
            f"{(samples['asyncio'].median - samples['pass'].median) * 1e3:.1f} ms over `pass` (median)",
        ),
    ]
