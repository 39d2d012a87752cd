"""Benchmark: batched torch RPCA (lrgan_dist.lowrank) vs the paper's numpy loop.

    python bench/bench_rpca.py            # d = 512 pair + throughput (several minutes)
    python bench/bench_rpca.py --quick    # smaller: d = 64 pair, 16 samples at d = 64

Part 1 — one sample, both Grams (M_R, M_B) at d = 512 (λ = 1/60, the paper's setting;
``--quick``: d = 64, λ = 1/√d),
factorised by each torch solver (``fast`` = the default, ``ialm``, ``ialm-partial`` = ialm
with warm-started partial eigendecompositions, ``reference`` = the
paper's iteration in torch) and by ``np_reference``, a one-problem numpy implementation of
``RobustPCA.fit`` (np.linalg.svd per iteration), run side by side on the same matrices.
Printed: wall time, iterations, PCP objective ‖L‖_* + λ‖S‖₁, relative duality gap
(certificate, lower is better), numerical ranks, and time ratios against numpy.

Part 2 — throughput of the default solver: 64 samples at d = 64 (128 problems in one batch,
λ = 1/√d) and 2 samples at d = 512 (λ = 1/60), in samples per second (two Grams per sample).

Grams are built like the region Grams of a generator (DESIGN.md §1), exactly as in
tests/test_lowrank.py: ``J`` [24·24, d] is a sum of 5 localised parts — a Gaussian blob on
the image times random per-pixel loadings on its own block (3-6 dims) of a random
orthonormal latent basis — plus a weak diffuse term ``Σ_k s_k n_k q_kᵀ`` with a decaying
spectrum ``s_k = 0.05 · k^(-1)`` over all latent directions (so the Grams are full rank with
a long tail, like real generator Jacobians); R is the upper-left quadrant;
``M_R = Jᵀ diag(R) J / ΣR``, ``M_B = Jᵀ diag(1 − R) J / Σ(1 − R)``.  (A variant with 10
larger parts made the numpy reference run past 10 000 iterations at d = 256.)
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch

from lrgan_dist.lowrank import RPCAConfig, numerical_rank, rpca


def realistic_grams(d: int, seed: int, h: int = 24, w: int = 24, n_parts: int = 5,
                    diffuse: float = 0.05):
    """(M_R, M_B) of a structured Jacobian; the same construction as tests/test_lowrank.py."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    J = np.zeros((h * w, d))
    k = 0
    for p in range(n_parts):
        cy, cx = rng.uniform(0.15, 0.85, 2)
        r = rng.uniform(0.08, 0.18)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)).ravel()
        kp = min(int(rng.integers(3, 7)), (d - k) // (n_parts - p))
        feats = rng.standard_normal((h * w, kp)) * blob[:, None] * (1.0 + p)
        J += feats @ Q[:, k:k + kp].T
        k += kp
    s = diffuse * np.arange(1, d + 1, dtype=float) ** -1.0
    J += (rng.standard_normal((h * w, d)) * s) @ Q.T
    R = np.zeros((h, w))
    R[: h // 2, : w // 2] = 1
    R = R.ravel()
    return (J.T * R) @ J / R.sum(), (J.T * (1 - R)) @ J / (1 - R).sum()


def np_reference(M, lam, tol=1e-7, max_iter=10_000):
    """RobustPCA.fit of the paper's code (fixed μ = n₁n₂/(4‖M‖₁), matrix 1-norm)."""
    mu = M.shape[0] * M.shape[1] / (4 * np.linalg.norm(M, ord=1))
    S = np.zeros_like(M)
    Y = np.zeros_like(M)
    err, it = np.inf, 0
    while err > tol * np.linalg.norm(M) and it < max_iter:
        U, s, Vh = np.linalg.svd(M - S + Y / mu, full_matrices=False)
        L = (U * np.maximum(s - 1 / mu, 0)) @ Vh
        X = M - L + Y / mu
        S = np.sign(X) * np.maximum(np.abs(X) - lam / mu, 0)
        Y = Y + mu * (M - L - S)
        err = np.linalg.norm(M - L - S)
        it += 1
    return L, S, it


def part1(d: int, lam: float, ref_max_iter: int, solvers: list[str]) -> None:
    M_R, M_B = realistic_grams(d, seed=0)
    print(f"\n== one sample, both Grams, d = {d}, λ = {lam:.5g} ==")
    print(f"{'solver':<22}{'time [s]':>10}{'iterations':>16}{'objective R / B':>30}"
          f"{'gap R / B':>20}{'rank R / B (numpy)':>20}{'rank (1e-3)':>13}")
    print("(running the numpy reference loop …)", flush=True)
    t0 = time.perf_counter()
    out = [np_reference(M, lam, max_iter=ref_max_iter) for M in (M_R, M_B)]
    t_np = time.perf_counter() - t0
    obj_np = [np.linalg.svd(L, compute_uv=False).sum() + lam * np.abs(S).sum() for L, S, _ in out]
    rk_np = [int(np.linalg.matrix_rank(L)) for L, _, _ in out]
    rk3 = [int(numerical_rank(torch.tensor(np.linalg.svd(L, compute_uv=False)), 1e-3)) for L, _, _ in out]
    print(f"{'numpy reference loop':<22}{t_np:>10.2f}{str([o[2] for o in out]):>16}"
          f"{f'{obj_np[0]:.9g} / {obj_np[1]:.9g}':>30}{'-':>20}{str(rk_np):>20}{str(rk3):>13}")
    M = torch.tensor(np.stack([M_R, M_B]))
    times = {}
    for solver in solvers:
        name, _, eig = solver.partition("-")  # "ialm-partial": ialm with partial eigendecompositions
        cfg = RPCAConfig(lam=lam, solver=name, max_iter=ref_max_iter if name == "reference" else 10_000,
                         eig=eig or "full")
        t0 = time.perf_counter()
        res = rpca(M, cfg)
        times[solver] = time.perf_counter() - t0
        obj = res.objective.tolist()
        print(f"{'torch ' + solver:<22}{times[solver]:>10.2f}{str(res.iterations.tolist()):>16}"
              f"{f'{obj[0]:.9g} / {obj[1]:.9g}':>30}"
              f"{f'{res.gap[0].item():.1e} / {res.gap[1].item():.1e}':>20}"
              f"{str(numerical_rank(res.sv).tolist()):>20}{str(numerical_rank(res.sv, 1e-3).tolist()):>13}")
        rel = [(o - r) / r for o, r in zip(obj, obj_np)]
        print(f"{'':<22}objective vs numpy: {rel[0]:+.1e} / {rel[1]:+.1e}; "
              f"converged {res.converged.tolist()}", flush=True)
    for solver, t in times.items():
        print(f"ratio numpy-reference / torch {solver}: {t_np / t:.1f}x  "
              f"({t:.2f} s per sample vs {t_np:.2f} s)")


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
    ap.add_argument("--quick", action="store_true", help="d = 64 pair, fewer samples")
    ap.add_argument("--lam", type=float, default=None,
                    help="λ for part 1 (default: the paper's 1/60 at d = 512, 1/√d with --quick)")
    ap.add_argument("--ref-max-iter", type=int, default=10_000)
    ap.add_argument("--solvers", default="fast,ialm,ialm-partial,reference")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("LRGAN_BENCH_THREADS", "2")))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, float64, CPU")
    d = 64 if args.quick else 512
    lam = args.lam if args.lam is not None else (1 / math.sqrt(d) if args.quick else 1 / 60)
    part1(d, lam, args.ref_max_iter, args.solvers.split(","))
    part2(16 if args.quick else 64, 0 if args.quick else 2, 512)


if __name__ == "__main__":
    main()
