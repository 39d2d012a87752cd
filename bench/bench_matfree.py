"""Matrix-free vs dense region subspaces (issue 17), CPU.

    python bench/bench_matfree.py [--threads 2] [--skip-9216] [--skip-512]

d = 512: a random StyleGAN2 (w space, w_dim 512, 32² output, 32² grid), one sample, one box
region: the dense path (d JVPs → J → Grams → eigh) against core.matfree (k = 32,
oversample 8, certificate 1e-4) side by side -- seconds, peak RSS growth, generator passes
(tangent products: JVPs + VJPs), and the largest principal-angle sine of the top-k_gap
subspace.  d = 9 216: W+ over all 18 slots of a 1024² StyleGAN2 (random, thin channels so
that it runs on CPU); dense is not run -- its cost is printed as an estimate from the
measured time per JVP.
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from lrgan_dist.core.jacobian import jacobian, pool_image, region_grams
from lrgan_dist.core.matfree import MatFreeConfig, dense_topk, region_subspaces
from lrgan_dist.generators import build_generator


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def sine(A: torch.Tensor, B: torch.Tensor) -> float:
    Qb = torch.linalg.qr(B.double().T)[0]
    R = A.double() - (A.double() @ Qb) @ Qb.T
    return float(R.norm(dim=1).max())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-9216", action="store_true")
    ap.add_argument("--skip-512", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    k, p = 32, 8
    if not a.skip_512:
        run_512(k, p)
    if not a.skip_9216:
        run_9216(k, p)


def run_512(k: int, p: int) -> None:
    print("== d = 512 (StyleGAN2 w, 32x32 output and grid, 1 sample, 1 region) ==")
    G = build_generator("stylegan2", {"random_init": {"z_dim": 512, "w_dim": 512, "img_resolution": 32,
                                                      "channel_base": 1024, "channel_max": 32, "perturb": 0.1},
                                      "space": "w"})
    x = G.sample_latents(0, [0])
    grid = (32, 32)
    mask = torch.zeros(1, *grid)
    mask[0, 8:20, 10:24] = 1
    r0, t0 = rss_mb(), time.perf_counter()
    _, J = jacobian(lambda z: pool_image(G.forward(z), grid, "mean"), x, chunk=32)
    gi, go = region_grams(J, mask, dtype=torch.float64)
    Vi, ti = dense_topk(gi[:, 0], k)
    Vo, to = dense_topk(go[:, 0], k)
    t_dense, m_dense = time.perf_counter() - t0, rss_mb() - r0
    r1, t1 = rss_mb(), time.perf_counter()
    res = region_subspaces(G, x, mask, grid, cfg=MatFreeConfig(k=k, oversample=p, tol=1e-4, chunk=16, union=False))
    t_mf, m_mf = time.perf_counter() - t1, rss_mb() - r1
    passes = res.counts["jvp"] + res.counts["vjp"]
    s_in = sine(res.basis_in[0, 0], Vi[0])
    s_out = sine(res.basis_out[0, 0], Vo[0])
    print(f"{'path':10s} {'seconds':>8s} {'peak RSS +MB':>12s} {'gen passes':>10s}")
    print(f"{'dense':10s} {t_dense:8.1f} {m_dense:12.1f} {512:10d}   (J {J.numel() * 4 / 2**20:.1f} MB, Grams 2x{512 * 512 * 8 / 2**20:.1f} MB)")
    print(f"{'matfree':10s} {t_mf:8.1f} {m_mf:12.1f} {passes:10d}   ({res.counts['jvp']} JVP + {res.counts['vjp']} VJP, "
          f"{res.counts['blocks']} blocks, certified {bool(res.certified.all())}, max residual "
          f"{float(torch.maximum(res.residual_in, res.residual_out).max()):.1e})")
    print(f"top-{k} subspace sine vs dense: in {s_in:.2e}, out {s_out:.2e}; "
          f"eig_in[k-1]/eig_in[0] = {float(ti[0, -1] / ti[0, 0]):.2e}")


def run_9216(k: int, p: int) -> None:
    print("== d = 9216 (StyleGAN2 W+ all 18 slots, 1024x1024 output, thin random channels, 64x64 grid) ==")
    G = build_generator("stylegan2", {"random_init": {"z_dim": 512, "w_dim": 512, "img_resolution": 1024,
                                                      "channel_base": 4096, "channel_max": 4, "mapping_layers": 2,
                                                      "perturb": 0.1}, "space": "wplus", "layers": "all"})
    x = G.sample_latents(0, [0])
    grid = (64, 64)
    mask = torch.zeros(1, *grid)
    mask[0, 16:40, 20:48] = 1
    d = G.latent_dim
    # dense estimate: time 16 JVPs and scale to d
    from lrgan_dist.core.matfree import RegionOperator
    op = RegionOperator(G.forward, x, grid, "mean", 16)
    t0 = time.perf_counter()
    op.jvp(torch.randn(1, 16, d))
    per_jvp = (time.perf_counter() - t0) / 16
    r1, t1 = rss_mb(), time.perf_counter()
    res = region_subspaces(G, x, mask, grid, cfg=MatFreeConfig(k=k, oversample=p, tol=1e-4, chunk=16, union=False,
                                                               max_blocks=6))
    t_mf, m_mf = time.perf_counter() - t1, rss_mb() - r1
    passes = res.counts["jvp"] + res.counts["vjp"]
    print(f"d = {d}: matfree {t_mf:.1f} s, peak RSS +{m_mf:.0f} MB, {passes} generator passes "
          f"({res.counts['jvp']} JVP + {res.counts['vjp']} VJP, {res.counts['blocks']} blocks), "
          f"certified {bool(res.certified.all())}, max residual "
          f"{float(torch.maximum(res.residual_in, res.residual_out).max()):.1e}; passes / d = {passes / d:.3f} "
          f"({d / passes:.1f}x fewer)")
    print(f"dense estimate: {d} JVPs x {per_jvp:.2f} s = {d * per_jvp / 60:.0f} min, J {d * grid[0] * grid[1] * 4 / 2**20:.0f} MB,"
          f" Grams 2 x {d * d * 4 / 2**20:.0f} MB (float32) per region, eigh 2 x O(d^3)")


if __name__ == "__main__":
    main()
