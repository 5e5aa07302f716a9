"""Every benchmark of issue #5, fedbearer side by side with the reference SDK (`nebius`).

    .venv/bin/python benches/run_all.py            # what `make bench` runs (< 10 min)
    .venv/bin/python benches/run_all.py --quick    # fewer rounds, for a smoke check
    .venv/bin/python benches/run_all.py --only hotpath flow

Writes docs/benchmarks.md, docs/benchmarks.png and benches/results.json. The reference's token
cache (`~/.nebius/credentials.yaml`) lives in a temporary HOME for the whole run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

SECTIONS = ("import", "hotpath", "flow", "login", "memory", "criterion")
QUIET_LOAD = 2.0  # 1-minute load average below which a section starts (2 cores)
QUIET_WAIT = 40.0  # the longest a section waits for it, in seconds


def _wait_for_quiet() -> float:
    """Let other users' bursts pass before a section starts (bounded, so a run stays < 10 min)."""
    deadline = time.monotonic() + QUIET_WAIT
    while os.getloadavg()[0] > QUIET_LOAD and time.monotonic() < deadline:
        time.sleep(2.0)
    return os.getloadavg()[0]


def _machine(real_home: str) -> dict[str, str]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        rustc = subprocess.run(
            ["rustc", "-V"], capture_output=True, text=True, env={**os.environ, "HOME": real_home}
        ).stdout.strip()
    except OSError:
        rustc = "not found"
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    load = os.getloadavg()
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "rustc": rustc,
        "fedbearer": ver("fedbearer"),
        "nebius": ver("nebius"),
        "aiohttp": ver("aiohttp"),
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke check)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args()
    sections = args.only or list(SECTIONS)

    real_home = os.environ.get("HOME", "")
    scratch_home = tempfile.mkdtemp(prefix="fedbearer-bench-home-")
    os.environ["HOME"] = scratch_home  # before the reference SDK is imported anywhere
    machine = _machine(real_home)
    started = time.monotonic()
    figures: list[Any] = []
    meta: dict[str, Any] = {
        "command": ".venv/bin/python benches/run_all.py" + (" --quick" if args.quick else ""),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    try:
        for section in sections:
            load = _wait_for_quiet()
            meta.setdefault("load_at_section_start", {})[section] = round(load, 2)
            t0 = time.monotonic()
            print(f"== {section} (load {load:.2f})", flush=True)
            if section == "import":
                import bench_import

                figures += bench_import.run(args.quick)
            elif section == "hotpath":
                import bench_hotpath

                figures += bench_hotpath.run(args.quick)
            elif section == "flow":
                import bench_flow

                figures += bench_flow.run(args.quick)
            elif section == "login":
                import bench_login

                figures += bench_login.run(args.quick)
            elif section == "memory":
                import bench_memory

                figures += bench_memory.run(args.quick)
            elif section == "criterion":
                import bench_criterion

                rust, info = bench_criterion.run(args.quick, env={**os.environ, "HOME": real_home})
                figures += rust
                meta["criterion"] = info
            print(f"   {time.monotonic() - t0:.0f} s", flush=True)
    finally:
        shutil.rmtree(scratch_home, ignore_errors=True)
        os.environ["HOME"] = real_home
    meta["elapsed"] = time.monotonic() - started

    _print(figures)
    if not args.no_write:
        import report

        report.write_markdown(os.path.join(ROOT, "docs", "benchmarks.md"), figures, machine, meta)
        problem = report.write_chart(os.path.join(ROOT, "docs", "benchmarks.png"), figures)
        if problem:
            print(f"chart: {problem}")
        with open(os.path.join(HERE, "results.json"), "w") as f:
            json.dump(
                {"machine": machine, "meta": meta, "figures": [x.to_dict() for x in figures]}, f, indent=1
            )
            f.write("\n")
        print("wrote docs/benchmarks.md, docs/benchmarks.png, benches/results.json")
    missed = [f.key for f in figures if f.met is False]
    print(f"targets missed: {', '.join(missed) if missed else 'none'}")
    return 0


def _print(figures: list[Any]) -> None:
    from _timing import minmed

    for f in figures:
        ratio = "—" if f.ratio is None else f"{f.ratio:.3g}×"
        verdict = {True: "met", False: "MISSED", None: ""}[f.met]
        print(
            f"{f.key:<34} ref {minmed(f.reference, f.unit):<24} fed {minmed(f.fedbearer, f.unit):<24} "
            f"ratio {ratio:<8} {f.target} {verdict}"
        )


if __name__ == "__main__":
    sys.exit(main())
