"""Benchmark: batched torch RPCA (lrgan_dist.core.rpca) vs the paper's numpy loop, side by side.

    python bench/bench_rpca.py                         # StyleGAN2 Grams, d = 512 (~3 min)
    python bench/bench_rpca.py --grams structured      # the test suite's structured Grams
    python bench/bench_rpca.py --grams synthetic       # the synthetic generator at d = 512
    python bench/bench_rpca.py --quick                 # d = 64 (structured), seconds

Part 1 — one sample, both Grams (M_R, M_B) at d = 512, λ = 1/60 (the paper's setting),
factorised by ``np_pcp_reference`` (lrgan_dist.testing.grams) — a one-problem numpy implementation of the paper's
``RobustPCA.fit`` (np.linalg.svd per iteration, fixed μ from numpy's matrix 1-norm,
tol 1e-7·‖M‖_F) — and by each torch solver on the same matrices: ``fast`` (the default:
inexact-ALM warm start, then certified Anderson-accelerated Douglas–Rachford, partial
eigendecompositions at this d), ``fast-plain`` (the same without the warm start's slow
band, ``warm_slow_rho = 1.1``: the default before 2026-12-02), ``fast-full`` (the same
with full eigh), ``ialm`` (quick,
uncertified), ``reference`` (the paper's iteration in torch).  Printed per solver: wall
time, iterations, PCP objective ‖L‖_* + λ‖S‖₁ and its difference to numpy's, the relative
duality gap (a certificate: the objective is within it of the optimum), numerical ranks
(numpy tolerance and relative 1e-3), the smallest principal cosine between the LowRankGAN
directions carrying ≥ 1 % of the region energy (rank tolerance 1e-3) and numpy's, and the
time ratio numpy / torch.

Gram sources (``--grams``):

* ``stylegan2`` (default) — a random-weight StyleGAN2 (64², z = w = 512, 8 mapping layers,
  channel_base 4096, channel_max 128, perturbed biases/noise), Jacobian in w of the
  channel-mean image on the 64² grid, region = a box across the upper middle
  (rows 0.40–0.55, cols 0.25–0.75): the kind of Gram the issue's 140 s figure was
  measured on (the paper's code on a 64² StyleGAN2).
* ``structured`` — Grams built like a generator's (tests/core/test_rpca_lowrankgan.py
  ``structured_grams``): 5 localised parts on random latent blocks plus a decaying diffuse
  term; R = the upper-left quadrant.
* ``synthetic`` — the built-in synthetic generator with ``latent_dim = 512`` (24 used
  latent dimensions, 488 without effect: highly degenerate), eye box of a centred face,
  float32 Grams as the pipeline stores them.

Part 2 — throughput of the default solver: 64 samples at d = 64 (128 problems in one batch,
λ = 1/√d, structured Grams) and 2 samples at d = 512 (λ = 1/60), in samples per second.
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch

from lrgan_dist.core.lowrankgan import lowrankgan_directions, numerical_rank
from lrgan_dist.core.rpca import RPCAConfig, rpca
from lrgan_dist.testing.grams import energetic, min_principal_cos, np_pcp_reference, structured_grams


def realistic_grams(d: int, seed: int):
    """(M_R, M_B) of a structured Jacobian (lrgan_dist.testing.grams ``structured_grams``)."""
    return structured_grams(d, seed=seed)


def stylegan2_grams(d: int = 512, seed: int = 0):
    from lrgan_dist.core.jacobian import JacobianConfig, JacobianEngine
    from lrgan_dist.generators import build_generator
    from lrgan_dist.regions import box_mask

    G = build_generator("stylegan2", {"random_init": {
        "z_dim": d, "w_dim": d, "img_resolution": 64, "channel_base": 4096, "channel_max": 128,
        "mapping_layers": 8, "perturb": 0.1, "seed": 0}, "space": "w"})
    x = G.sample_latents(seed, [0])
    mask = torch.as_tensor(box_mask((0.40, 0.25, 0.55, 0.75), (64, 64), (64, 64)))[None]
    out = JacobianEngine(G, JacobianConfig(grid=(64, 64), chunk=64)).compute(x, mask)
    return out["gram_in"][0, 0].double().numpy(), out["gram_out"][0, 0].double().numpy()


def synthetic_grams(d: int = 512, seed: int = 0):
    from lrgan_dist.core.jacobian import JacobianConfig, JacobianEngine
    from lrgan_dist.generators import build_generator
    from lrgan_dist.regions import box_mask

    G = build_generator("synthetic", {"latent_dim": d, "resolution": 64, "seed": 0})
    x = G.centre(G.sample_latents(seed, [0]))
    mask = torch.as_tensor(box_mask(G.canonical_boxes()["eyes"], (64, 64), (64, 64)))[None]
    out = JacobianEngine(G, JacobianConfig(grid=(64, 64))).compute(x, mask)
    return out["gram_in"][0, 0].double().numpy(), out["gram_out"][0, 0].double().numpy()


def _np_directions(L_R, L_B, rank_tol=1e-3):
    """LowRankGAN directions from numpy's L's with a relative rank tolerance."""
    def rank(L):
        s = np.linalg.svd(L, compute_uv=False)
        return int((s > rank_tol * s[0]).sum())

    d = L_R.shape[0]
    _, _, VHf = np.linalg.svd(L_R)
    _, _, VHb = np.linalg.svd(L_B)
    P = VHf[:rank(L_R)]
    N = VHb[min(rank(L_B), d):].T
    D = (N @ N.T @ P.T).T
    nrm = np.linalg.norm(D, axis=1)
    return D[nrm > 1e-6] / nrm[nrm > 1e-6, None]


def part1(M_R: np.ndarray, M_B: np.ndarray, lam: float, ref_max_iter: int, solvers: list[str]) -> None:
    d = M_R.shape[0]
    print(f"\n== one sample, both Grams, d = {d}, λ = {lam:.5g} ==")
    print(f"{'solver':<20}{'time [s]':>9}{'iterations':>14}{'objective R / B':>28}{'gap R / B':>20}"
          f"{'rank numpy':>12}{'rank 1e-3':>11}{'dir cos':>9}")
    print("(running the numpy reference loop …)", flush=True)
    t0 = time.perf_counter()
    out = [np_pcp_reference(M, lam, max_iter=ref_max_iter) for M in (M_R, M_B)]
    t_np = time.perf_counter() - t0
    obj_np = [np.linalg.svd(L, compute_uv=False).sum() + lam * np.abs(S).sum() for L, S, _ in out]
    rk_np = [int(np.linalg.matrix_rank(L)) for L, _, _ in out]
    rk3 = [int(numerical_rank(torch.tensor(np.linalg.svd(L, compute_uv=False)), 1e-3)) for L, _, _ in out]
    D_np = energetic(_np_directions(out[0][0], out[1][0]), M_R)
    print(f"{'numpy reference loop':<20}{t_np:>9.2f}{str([o[2] for o in out]):>14}"
          f"{f'{obj_np[0]:.9g} / {obj_np[1]:.9g}':>28}{'-':>20}{str(rk_np):>12}{str(rk3):>11}{'1':>9}")
    M = torch.tensor(np.stack([M_R, M_B]))
    times = {}
    for solver in solvers:
        # "fast-full": full eigendecompositions; "fast-plain": no slow band in the warm start
        name, _, variant = solver.partition("-")
        cfg = RPCAConfig(lam=lam, solver=name, max_iter=ref_max_iter if name == "reference" else 10_000,
                         eig="full" if variant == "full" else "auto",
                         warm_slow_rho=(RPCAConfig().warm_rho if variant == "plain"
                                        else RPCAConfig().warm_slow_rho))
        t0 = time.perf_counter()
        res = rpca(M, cfg)
        times[solver] = time.perf_counter() - t0
        obj = res.objective.tolist()
        dirs = lowrankgan_directions(M[:1], M[1:], cfg, rank_tol=1e-3)  # same solve, for the directions
        D = energetic(dirs.vectors[0].numpy(), M_R)
        cos = min_principal_cos(D, D_np) if D.shape == D_np.shape else float("nan")
        print(f"{'torch ' + solver:<20}{times[solver]:>9.2f}{str(res.iterations.tolist()):>14}"
              f"{f'{obj[0]:.9g} / {obj[1]:.9g}':>28}"
              f"{f'{res.gap[0].item():.1e} / {res.gap[1].item():.1e}':>20}"
              f"{str(numerical_rank(res.sv).tolist()):>12}{str(numerical_rank(res.sv, 1e-3).tolist()):>11}"
              f"{cos:>9.5f}")
        rel = [(o - r) / r for o, r in zip(obj, obj_np)]
        print(f"{'':<20}objective vs numpy: {rel[0]:+.1e} / {rel[1]:+.1e}; converged {res.converged.tolist()}; "
              f"{len(D)} vs {len(D_np)} carrying directions", flush=True)
    for solver, t in times.items():
        print(f"ratio numpy-reference / torch {solver}: {t_np / t:.1f}x  ({t:.2f} s per sample vs {t_np:.2f} s)")


def part2(n64: int, n512: int, d_big: int) -> None:
    print("\n== throughput of the default solver (two Grams per sample) ==")
    for d, n in ((64, n64), (d_big, n512)):
        if n == 0:
            continue
        pairs = [realistic_grams(d, seed=s) for s in range(n)]
        M = torch.tensor(np.stack([m for p in pairs for m in p]))
        t0 = time.perf_counter()
        res = rpca(M, RPCAConfig(lam=1 / math.sqrt(d) if d <= 128 else 1 / 60))
        t = time.perf_counter() - t0
        its = res.iterations.double()
        print(f"d = {d:>3}: {n:>3} samples in {t:7.2f} s = {n / t:7.2f} samples/s; iterations "
              f"median {its.median().item():.0f}, max {its.max().item():.0f}; "
              f"converged {int(res.converged.sum())}/{2 * n}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="d = 64 structured pair, fewer samples")
    ap.add_argument("--grams", choices=["stylegan2", "structured", "synthetic"], default="stylegan2")
    ap.add_argument("--lam", type=float, default=None,
                    help="λ for part 1 (default: the paper's 1/60 at d = 512, 1/√d with --quick)")
    ap.add_argument("--ref-max-iter", type=int, default=10_000)
    ap.add_argument("--solvers", default="fast,fast-plain,fast-full,ialm,reference")
    ap.add_argument("--no-throughput", action="store_true", help="skip part 2")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("LRGAN_BENCH_THREADS", "2")))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, float64, CPU")
    d = 64 if args.quick else 512
    lam = args.lam if args.lam is not None else (1 / math.sqrt(d) if args.quick else 1 / 60)
    source = "structured" if args.quick else args.grams
    t0 = time.perf_counter()
    M_R, M_B = {"stylegan2": stylegan2_grams, "structured": lambda d: realistic_grams(d, 0),
                "synthetic": synthetic_grams}[source](d)
    print(f"Grams: {source}, d = {d} (built in {time.perf_counter() - t0:.1f} s)")
    part1(M_R, M_B, lam, args.ref_max_iter, args.solvers.split(","))
    if not args.no_throughput:
        part2(16 if args.quick else 64, 0 if args.quick else 2, 512)


if __name__ == "__main__":
    main()
