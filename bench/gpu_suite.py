"""One prepared GPU measurement script (issue 17).  Prints a table and writes JSON.

    python bench/gpu_suite.py --device cuda --out gpu_suite.json       # one GPU, < 10 min
    python bench/gpu_suite.py --device cpu --smoke --out smoke.json    # tiny sizes, CI

Measures: (1) StyleGAN2 config-f (random weights, 1024², w, 256² grid) Jacobian seconds per
sample at the default jvp chunk (16) and the best of a few chunks, forward vs reverse mode
on a slice of the Jacobian; (2) batched RPCA pairs/s at d = 512 with torch.linalg.eigh on
the default backend, on MAGMA, and with the solver's partial eigensolver (eig='partial');
(3) the matrix-free path at d = 9 216 (W+ 18×512) per sample; (4) CUDA against CPU on a
small case.  --smoke shrinks every size so the whole run takes seconds on a CPU.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from lrgan_dist.core.jacobian import jacobian, pool_image
from lrgan_dist.core.matfree import MatFreeConfig, RegionOperator, region_subspaces
from lrgan_dist.core.rpca import RPCAConfig, rpca
from lrgan_dist.generators import build_generator

KEYS = ("device", "smoke", "jacobian", "rpca", "matfree", "check")


def sync(dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Any, dev: str) -> tuple[Any, float]:
    sync(dev)
    t = time.perf_counter()
    out = fn()
    sync(dev)
    return out, time.perf_counter() - t


def sg2(dev: str, smoke: bool, space: str = "w", layers: Any = None) -> Any:
    ri = ({"z_dim": 32, "w_dim": 32, "img_resolution": 16, "channel_base": 256, "channel_max": 16,
           "mapping_layers": 2} if smoke else {"img_resolution": 1024, "channel_base": 32768, "channel_max": 512})
    params: dict[str, Any] = {"random_init": {**ri, "perturb": 0.05}, "space": space, "device": dev}
    if layers is not None:
        params["layers"] = layers
    return build_generator("stylegan2", params).to(dev)


def bench_jacobian(dev: str, smoke: bool) -> dict[str, Any]:
    G = sg2(dev, smoke)
    grid = (8, 8) if smoke else (256, 256)
    x = G.sample_latents(0, [0]).to(dev)
    fn = lambda z: pool_image(G.forward(z), grid, "mean")  # noqa: E731
    d = x.shape[1]
    chunks = (4, 8) if smoke else (8, 16, 32, 64)
    per_chunk = {}
    for c in chunks:
        _, t = timed(lambda c=c: jacobian(fn, x, chunk=c), dev)
        per_chunk[c] = t
    default = 8 if smoke else 16
    # forward vs reverse mode on a slice: s JVPs vs s VJPs (rows of J)
    s = 4 if smoke else 16
    op = RegionOperator(G.forward, x, grid, "mean", chunk=s)
    _, t_fwd = timed(lambda: op.jvp(torch.randn(1, s, d, device=dev)), dev)
    _, t_rev = timed(lambda: op.vjp(torch.randn(1, s, 1, *grid, device=dev)), dev)
    P = grid[0] * grid[1]
    return {"d": d, "grid": list(grid), "seconds_per_sample": {str(c): t for c, t in per_chunk.items()},
            "default_chunk": default, "default_seconds": per_chunk[default],
            "best_chunk": min(per_chunk, key=per_chunk.get), "best_seconds": min(per_chunk.values()),
            "slice": s, "forward_slice_seconds": t_fwd, "reverse_slice_seconds": t_rev,
            "reverse_full_estimate_seconds": t_rev / s * P, "forward_full_estimate_seconds": t_fwd / s * d}


def _grams(B: int, d: int, dev: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    A = torch.randn(B, d, d // 8, generator=g, dtype=torch.float64)
    return (A @ A.mT + 0.01 * torch.eye(d, dtype=torch.float64)).to(dev)


def bench_rpca(dev: str, smoke: bool) -> dict[str, Any]:
    d, B = (32, 4) if smoke else (512, 64)
    M = _grams(B, d, dev)
    out: dict[str, Any] = {"d": d, "batch": B}
    variants = [("eigh_default", "full", None)]
    if dev.startswith("cuda"):
        variants.append(("eigh_magma", "full", "magma"))
    variants.append(("partial", "partial", None))
    for name, eig, lib in variants:
        prev = None
        if lib is not None:
            prev = torch.backends.cuda.preferred_linalg_library()
            torch.backends.cuda.preferred_linalg_library(lib)
        try:
            cfg = RPCAConfig(eig=eig, max_iter=50 if smoke else 10_000)
            res, t = timed(lambda cfg=cfg: rpca(M, cfg), dev)
            out[name] = {"pairs_per_second": B / 2 / t, "seconds": t,
                         "iterations_max": int(torch.as_tensor(res.iterations).max())}
        finally:
            if prev is not None:
                torch.backends.cuda.preferred_linalg_library(prev)
    if "eigh_magma" not in out:
        out["eigh_magma"] = None  # CUDA only
    return out


def bench_matfree(dev: str, smoke: bool) -> dict[str, Any]:
    G = sg2(dev, smoke, space="wplus", layers="all")
    grid = (8, 8) if smoke else (256, 256)
    x = G.sample_latents(0, [0]).to(dev)
    mask = torch.zeros(1, *grid, device=dev)
    mask[0, grid[0] // 4: grid[0] // 2, grid[1] // 4: 3 * grid[1] // 4] = 1
    cfg = MatFreeConfig(k=4 if smoke else 32, oversample=4 if smoke else 8, tol=1e-4, max_blocks=4 if smoke else 8,
                        chunk=8 if smoke else 16, union=True)
    res, t = timed(lambda: region_subspaces(G, x, mask, grid, cfg=cfg), dev)
    return {"d": int(x.shape[1]), "k": cfg.k, "seconds_per_sample": t, "counts": res.counts,
            "generator_passes": res.counts["jvp"] + res.counts["vjp"], "certified": bool(res.certified.all()),
            "max_residual": float(torch.maximum(res.residual_in, res.residual_out).max())}


def check_vs_cpu(dev: str) -> dict[str, Any]:
    """Small case on dev and on CPU: images, J and one RPCA problem."""
    Gc = sg2("cpu", True)
    x = Gc.sample_latents(0, [0])
    grid = (8, 8)
    _, Jc = jacobian(lambda z: pool_image(Gc.forward(z), grid, "mean"), x, chunk=8)
    Mc = _grams(1, 32, "cpu")
    Lc = rpca(Mc, RPCAConfig(max_iter=200)).L
    if dev == "cpu":
        return {"jacobian_max_rel_diff": 0.0, "rpca_L_max_rel_diff": 0.0, "note": "device is cpu"}
    Gd = sg2(dev, True)
    _, Jd = jacobian(lambda z: pool_image(Gd.forward(z), grid, "mean"), x.to(dev), chunk=8)
    Ld = rpca(Mc.to(dev), RPCAConfig(max_iter=200)).L
    return {"jacobian_max_rel_diff": float((Jd.cpu() - Jc).abs().max() / Jc.abs().max()),
            "rpca_L_max_rel_diff": float((Ld.cpu() - Lc).abs().max() / Lc.abs().max())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default="gpu_suite.json")
    a = ap.parse_args()
    dev = a.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device; use --device cpu --smoke")
    out: dict[str, Any] = {"device": dev if dev == "cpu" else torch.cuda.get_device_name(0), "smoke": a.smoke}
    for key, fn in (("jacobian", bench_jacobian), ("rpca", bench_rpca), ("matfree", bench_matfree)):
        t = time.perf_counter()
        out[key] = fn(dev, a.smoke)
        print(f"[{key}] {time.perf_counter() - t:.1f} s", flush=True)
    out["check"] = check_vs_cpu(dev)
    j, r, m = out["jacobian"], out["rpca"], out["matfree"]
    print(f"{'measure':48s} value")
    print(f"{'jacobian s/sample, default chunk ' + str(j['default_chunk']):48s} {j['default_seconds']:.3f}")
    print(f"{'jacobian s/sample, best chunk ' + str(j['best_chunk']):48s} {j['best_seconds']:.3f}")
    print(f"{'forward slice / reverse slice (s)':48s} {j['forward_slice_seconds']:.3f} / {j['reverse_slice_seconds']:.3f}")
    print(f"{'full J estimate forward / reverse (s)':48s} {j['forward_full_estimate_seconds']:.1f} / "
          f"{j['reverse_full_estimate_seconds']:.1f}")
    for name in ("eigh_default", "eigh_magma", "partial"):
        v = r[name]
        print(f"{'rpca pairs/s d=' + str(r['d']) + ' ' + name:48s} {'n/a' if v is None else format(v['pairs_per_second'], '.2f')}")
    print(f"{'matfree d=' + str(m['d']) + ' s/sample (passes, certified)':48s} {m['seconds_per_sample']:.2f} "
          f"({m['generator_passes']}, {m['certified']})")
    print(f"{'check vs cpu: J / rpca L max rel diff':48s} {out['check']['jacobian_max_rel_diff']:.1e} / "
          f"{out['check']['rpca_L_max_rel_diff']:.1e}")
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
