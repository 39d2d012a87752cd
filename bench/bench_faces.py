"""Benchmark of the real-model job (issue 13 F): wall time, Jacobian mode, landmark share.

    python bench/bench_faces.py                      # micro-benchmarks only (about a minute)
    python bench/bench_faces.py --job-samples 256    # plus the whole job through the CLI

Printed side by side, on the same generator (the trained DCGAN of jobs/faces_dcgan.yaml,
z ∈ R^100, 3×64×64, analysis grid 32×32, channels mean):

* per-sample Jacobian time in **forward mode** (the project's engine: d JVPs, batched,
  :class:`lrgan_dist.core.jacobian.JacobianEngine`) and in **reverse mode** (one VJP per
  pooled output pixel, c·h·w = 1024 of them, batched with ``torch.func.vmap``, what the
  reference implementation does), and their ratio; both Jacobians are checked equal;
* per-sample landmark time: render (no grad) + Face Mesh on the 256² upsampled image +
  rasterising eyes, mouth and nose; its share of (landmarks + forward Jacobian);
* with ``--job-samples N``: ``lrgan-dist submit jobs/faces_dcgan.yaml --samples N`` wall
  time (all stages and the report), the stage times from the CLI's JSON summary and the
  landmark seconds the jacobians stage reports (summed over its workers).

Threads: torch uses ``--threads`` (2: the machine the job targets).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _time(fn, repeat: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=4, help="samples per micro-benchmark batch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--job-samples", type=int, default=0, help="also run the job through the CLI at N samples")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from lrgan_dist.apply.build import make_generator
    from lrgan_dist.core.jacobian import JacobianConfig, JacobianEngine, pool_image, to_uint8_preview
    from lrgan_dist.spec import load_spec

    spec = load_spec(ROOT / "jobs/faces_dcgan.yaml")
    G = make_generator(spec, "cpu")
    grid = (spec.grid.resolution, spec.grid.resolution)
    n = a.samples
    x = G.sample_latents(0, list(range(n))).float()
    masks = torch.zeros(1, *grid)
    masks[0, 8:16, 4:28] = 1
    eng = JacobianEngine(G, JacobianConfig(grid=grid, channels="mean", chunk=25, keep_jacobian=True))
    t_fwd = _time(lambda: eng.compute(x, masks)) / n
    J_fwd = eng.compute(x[:1], masks)["jacobian"][0].reshape(-1, x.shape[1])  # [c·h·w, d]

    def pooled(z: torch.Tensor) -> torch.Tensor:
        return pool_image(G.forward(z[None], z[None].detach()), grid, "mean").reshape(-1)

    def reverse(z: torch.Tensor) -> torch.Tensor:
        y, vjp = torch.func.vjp(pooled, z)
        eye = torch.eye(y.numel())
        rows = [torch.func.vmap(vjp)(eye[i:i + 256])[0] for i in range(0, y.numel(), 256)]
        return torch.cat(rows)  # [c·h·w, d]

    t_rev = _time(lambda: [reverse(x[i]) for i in range(n)], repeat=1) / n
    J_rev = reverse(x[0])
    err = float((J_rev - J_fwd).abs().max() / J_fwd.abs().max())
    # landmarks: render + detect + rasterise three sets
    from lrgan_dist.landmarks import FaceMeshDetector, landmark_masks

    with FaceMeshDetector() as det:
        def lm() -> None:
            with torch.no_grad():
                img = G.forward(x, x)
            u8 = to_uint8_preview(img, tuple(G.image_range), max_size=64)
            landmark_masks(u8, ["eyes", "mouth", "nose"], grid, 1.0, detector=det)

        t_lm = _time(lm) / n
    res = {"threads": a.threads, "samples": n, "jacobian_forward_s_per_sample": round(t_fwd, 4),
           "jacobian_reverse_s_per_sample": round(t_rev, 4), "reverse_over_forward": round(t_rev / t_fwd, 1),
           "reverse_vs_forward_max_rel_diff": err, "landmarks_s_per_sample": round(t_lm, 4),
           "landmark_share_of_jacobians_stage": round(t_lm / (t_lm + t_fwd), 3)}
    if a.job_samples:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "lrgan_dist", "submit", str(ROOT / "jobs/faces_dcgan.yaml"),
                                "--samples", str(a.job_samples), "--store", f"{tmp}/s.zarr", "--no-progress", "--json",
                                "--report", f"{tmp}/report"], capture_output=True, text=True)
            wall = time.perf_counter() - t0
        res["job_samples"] = a.job_samples
        res["job_wall_s"] = round(wall, 1)
        res["job_rc"] = p.returncode
        try:
            summary = json.loads(p.stdout)
            res["job_stages"] = {k: v.get("seconds") for k, v in summary.get("stages", {}).items()
                                 if isinstance(v, dict)}
            jac = summary.get("stages", {}).get("jacobians", {})
            res["job_landmark_s"] = jac.get("landmark_seconds")
            res["job_no_face"] = jac.get("no_face")
        except (json.JSONDecodeError, AttributeError):
            res["job_stderr_tail"] = p.stderr[-2000:]
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
