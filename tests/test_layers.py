"""The layered architecture (docs/architecture.md) holds: core is pure numerics, the
import contract in pyproject.toml is kept, and it breaks when a layer imports upwards."""
from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lrgan_dist.core

ROOT = Path(__file__).resolve().parents[1]
CORE_MODULES = sorted(m.name for m in pkgutil.walk_packages(lrgan_dist.core.__path__, "lrgan_dist.core."))
FORBIDDEN = ("ray", "zarr", "yaml", "pandas", "lrgan_dist.generators", "lrgan_dist.store", "lrgan_dist.pipeline",
             "lrgan_dist.spec", "lrgan_dist.analysis", "lrgan_dist.apply")


def test_core_imports_nothing_outside_core():
    """Import every core module in a fresh interpreter and inspect sys.modules."""
    assert len(CORE_MODULES) >= 15, CORE_MODULES
    code = (
        "import importlib, sys, json\n"
        f"for m in {CORE_MODULES!r}: importlib.import_module(m)\n"
        f"bad = sorted(n for n in sys.modules if any(n == f or n.startswith(f + '.') for f in {FORBIDDEN!r}))\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (it is in the test extra)")
    return subprocess.run([exe, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(cwd)})


def test_import_contract_kept():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("module,line", [
    ("core/scores.py", "import ray  # injected"),
    ("core/subspaces.py", "import lrgan_dist.store  # injected"),
    ("generators/base.py", "import lrgan_dist.pipeline.runtime  # injected"),
    ("analysis/loaders.py", "import zarr  # injected"),
])
def test_import_contract_breaks_on_an_upward_import(tmp_path, module, line):
    """The contract is not vacuous: one injected upward import breaks it."""
    shutil.copytree(ROOT / "lrgan_dist", tmp_path / "lrgan_dist", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "lrgan_dist" / module
    src = target.read_text()
    head, sep, rest = src.partition("from __future__ import annotations\n")
    target.write_text(head + sep + line + "\n" + rest if sep else line + "\n" + src)
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "BROKEN" in proc.stdout
