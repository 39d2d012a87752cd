"""A shared study store on the synthetic generator (72 samples, four method entries).

Built once per pytest session by :func:`build_study_store` (jacobians, factorize and
transfer on an embedded Ray), reused by the transfer, analysis and edit tests.
"""
from __future__ import annotations

import json
from pathlib import Path

from lrgan_dist.spec import parse_spec
from lrgan_dist.store.zarrstore import Store

STUDY_SPEC = {
    "name": "transfer-study",
    "generator": {"kind": "synthetic", "params": {"latent_dim": 64, "resolution": 32, "seed": 0}},
    "samples": {"count": 72, "seed": 0},
    "grid": {"resolution": 32},
    "regions": {"eyes": {"box": [0.35, 0.28, 0.56, 0.72]}, "eyes_mask": {"part": "eyes"}},
    # LowRankGAN through the inexact-ALM RPCA solver: the same PCP problem, ~50× fewer
    # iterations than the default solver's certified optimum on these Grams (test budget).
    "methods": {"lowrankgan": {"solver": "ialm"}, "jacobian_svd": {},
                "lrg_lo": {"method": "lowrankgan", "lam": 0.05, "solver": "ialm"},
                "lrg_hi": {"method": "lowrankgan", "lam": 0.25, "solver": "ialm"}},
    "compute": {"actors": 2, "jvp_chunk": 16},
    "store": {"uri": "PLACEHOLDER", "chunk_samples": 8},
    # 2 sources × 72 targets; every pair rendered at a small α; up to 16 directions (all
    # carrying LowRankGAN directions here); box directions scored on the box and on the
    # targets' own ground-truth masks.
    "transfer": {"sources": 2, "directions": 16, "realized_pairs": 144, "strengths": [0.02],
                 "realized_dtype": "float64", "similarity_samples": 24, "score_on": {"eyes": ["eyes", "eyes_mask"]}, "seed": 0},
}


def _build(spec) -> dict:
    from lrgan_dist.pipeline.runtime import ray_session
    from lrgan_dist.pipeline.scheduler import submit
    from lrgan_dist.pipeline.stages.transfer import run_transfer

    with ray_session(num_cpus=2) as r:
        submit(spec, stages=("jacobians", "factorize"), show_progress=False)
        return run_transfer(spec, Store.open(spec.store.uri, mode="a"), r, show_progress=False)


def build_study_store(base: Path) -> tuple[object, str, dict]:
    """Create (once per session) the study store under ``base``; returns (spec, uri, stage report)."""
    root = base / "transfer_study"
    uri = str(root / "store.zarr")
    raw = json.loads(json.dumps(STUDY_SPEC))
    raw["store"]["uri"] = uri
    spec = parse_spec(raw)
    marker = root / "stage.json"
    if marker.exists():
        return spec, uri, json.loads(marker.read_text())
    root.mkdir(parents=True, exist_ok=True)
    report = _build(spec)
    marker.write_text(json.dumps(report))
    return spec, uri, report
