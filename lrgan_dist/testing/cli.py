"""Test helpers: run the CLI as a user would, small job specs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]  # the repository (tests use its jobs/)


def cli(*args: str, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``lrgan-dist ARGS`` in a subprocess (its own embedded Ray, stopped at exit)."""
    env = dict(os.environ)
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env.pop("RAY_ADDRESS", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    proc = subprocess.run([sys.executable, "-m", "lrgan_dist", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"lrgan-dist {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def cli_json(*args: str, **kw: Any) -> Any:
    proc = cli(*args, **kw)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def write_spec(path: Path, **sections: Any) -> Path:
    spec: dict[str, Any] = {
        "name": "test",
        "generator": {"kind": "synthetic", "params": {"latent_dim": 64, "resolution": 32, "seed": 0}},
        "samples": {"count": 12, "seed": 0},
        "grid": {"resolution": 32},
        "regions": {"eyes": {"box": [0.35, 0.28, 0.56, 0.72]}, "eyes_mask": {"part": "eyes"}},
        "methods": {"lowrankgan": {"lam": 0.25, "rank_tol": 0.001}, "jacobian_svd": {}},
        "compute": {"actors": 2, "jvp_chunk": 16},
        "store": {"uri": str(path.parent / "store.zarr"), "chunk_samples": 4},
        "transfer": {"sources": 2},
    }
    for k, v in sections.items():
        # methods and regions are replaced as a whole; other sections are merged
        if isinstance(v, dict) and isinstance(spec.get(k), dict) and k not in ("methods", "regions"):
            spec[k] = {**spec[k], **v}
        else:
            spec[k] = v
    path.write_text(yaml.safe_dump(spec))
    return path
