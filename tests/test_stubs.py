"""The hand-written ``_core.pyi`` matches the extension, and ``import fedbearer`` stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("aiohttp", "redis", "selenium")


def run_python(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_core_stub_matches_the_extension_module() -> None:
    result = run_python("-m", "mypy.stubtest", "fedbearer._core")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


@pytest.mark.parametrize("module", ["fedbearer", "fedbearer.federation", "fedbearer.cache", "fedbearer.cli"])
def test_importing_fedbearer_does_not_import_aiohttp_redis_or_selenium(module: str) -> None:
    probe = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    result = run_python("-c", probe)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_stub_exports_every_public_name_of_the_extension() -> None:
    import ast
    from pathlib import Path

    import fedbearer._core as core

    stub = Path(core.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text())
    declared = {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")
    }
    public = {name for name in dir(core) if not name.startswith("_")}
    assert public == declared
