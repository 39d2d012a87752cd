"""bench/gpu_suite.py --device cpu --smoke runs (issue 17) and writes every section of its JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_suite_smoke(tmp_path):
    out = tmp_path / "smoke.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_suite.py"), "--device", "cpu", "--smoke",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    for key in ("device", "smoke", "jacobian", "rpca", "matfree", "check"):
        assert key in data, key
    assert data["smoke"] is True
    assert {"default_seconds", "best_seconds", "forward_slice_seconds", "reverse_slice_seconds"} <= set(data["jacobian"])
    assert {"eigh_default", "eigh_magma", "partial"} <= set(data["rpca"])
    assert data["rpca"]["eigh_default"]["pairs_per_second"] > 0
    assert data["matfree"]["generator_passes"] > 0
    assert "jacobian_max_rel_diff" in data["check"]
