"""Linearized transfer scores: batched GEMM (lrgan_dist.core.scores) vs a per-pair Python loop.

Run:  python bench/bench_transfer.py [--sources 256] [--targets 2000] [--directions 8] [--dim 64]
                                     [--loop-targets 100] [--threads N] [--repeats 3]

Workload (the transfer stage's linearized part, DESIGN.md §2): S sources × k unit
directions, T targets with random PSD Grams M_R, M_B (d×d). For every (source,
direction, target): vᵀM_R v and vᵀM_B v and the locality — 2·S·k·T quadratic forms.

* ours: :func:`lrgan_dist.core.scores.linearized_transfer` — each Gram kind is ONE blocked
  GEMM ``[S·k, d(d+1)/2] × [d(d+1)/2, T]`` over the symmetric triangles (float64);
  also in float32, and a batched full-matrix variant (``(M_t Vᵀ) · Vᵀ`` summed over d,
  one ``[tb·d, d] × [d, S·k]`` product per target block — the einsum/bmm formulation,
  twice the flops of the triangle GEMM) for reference;
* baseline: a straightforward Python loop over (target, source, direction) computing
  ``v @ M @ v`` with numpy for both Grams. It is timed on the first ``--loop-targets``
  targets (all sources and directions) and **extrapolated linearly** to all T targets
  (the loop's cost is exactly proportional to the number of targets).

All variants are checked against the loop on the timed subset. Numbers are measured
side by side in one run (best of ``--repeats`` for the fast variants).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from lrgan_dist.core.scores import linearized_transfer


def random_grams(rng: np.random.Generator, T: int, d: int, rank: int) -> np.ndarray:
    A = rng.normal(size=(T, d, rank)).astype(np.float32) / np.sqrt(rank)
    return (A @ A.transpose(0, 2, 1)).astype(np.float32)  # stored Grams are float32


def loop_scores(V: np.ndarray, gi: np.ndarray, go: np.ndarray) -> np.ndarray:
    S, k, _ = V.shape
    T = gi.shape[0]
    loc = np.empty((S, T, k))
    for t in range(T):
        Mi = gi[t].astype(np.float64)
        Mo = go[t].astype(np.float64)
        for s in range(S):
            for j in range(k):
                v = V[s, j]
                a = v @ Mi @ v
                b = v @ Mo @ v
                loc[s, t, j] = a / (a + b)
    return loc


def bmm_scores(V: np.ndarray, gi: np.ndarray, go: np.ndarray, block: int = 64) -> np.ndarray:
    S, k, d = V.shape
    T = gi.shape[0]
    Vt = torch.from_numpy(V.reshape(S * k, d))
    out = np.empty((S, T, k))
    for t0 in range(0, T, block):
        t1 = min(T, t0 + block)
        Mi = torch.from_numpy(gi[t0:t1].astype(np.float64))
        Mo = torch.from_numpy(go[t0:t1].astype(np.float64))
        # (M_t V ᵀ) for the whole block as one [tb·d, d] × [d, S·k] product, then the row dots
        a = ((Mi.reshape(-1, d) @ Vt.T).reshape(t1 - t0, d, -1) * Vt.T).sum(1)  # [tb, S·k]
        b = ((Mo.reshape(-1, d) @ Vt.T).reshape(t1 - t0, d, -1) * Vt.T).sum(1)
        out[:, t0:t1] = (a / (a + b)).reshape(t1 - t0, S, k).permute(1, 0, 2).numpy()
    return out


def best(fn, repeats: int) -> tuple[float, object]:
    times, res = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
    return min(times), res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", type=int, default=256)
    ap.add_argument("--targets", type=int, default=2000)
    ap.add_argument("--directions", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--loop-targets", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    S, T, k, d = args.sources, args.targets, args.directions, args.dim
    rng = np.random.default_rng(0)
    V = rng.normal(size=(S, k, d))
    V /= np.linalg.norm(V, axis=-1, keepdims=True)
    gi = random_grams(rng, T, d, rank=8)
    go = random_grams(rng, T, d, rank=d)
    forms = 2 * S * k * T
    print(f"workload: {S} sources × {k} directions × {T} targets, d = {d}: {forms:,} quadratic forms "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()})")

    nl = min(args.loop_targets, T)
    t0 = time.perf_counter()
    ref = loop_scores(V, gi[:nl], go[:nl])
    t_loop_sub = time.perf_counter() - t0
    t_loop = t_loop_sub * T / nl

    t64, res64 = best(lambda: linearized_transfer(V, gi, go), args.repeats)
    t32, res32 = best(lambda: linearized_transfer(V, gi, go, dtype=np.float32), args.repeats)
    tbmm, resbmm = best(lambda: bmm_scores(V, gi, go), args.repeats)
    err64 = np.abs(res64["locality"][:, :nl] - ref).max()
    err32 = np.abs(res32["locality"][:, :nl] - ref).max()
    errb = np.abs(resbmm[:, :nl] - ref).max()
    assert err64 < 1e-9 and errb < 1e-9 and err32 < 1e-3, (err64, err32, errb)

    print(f"python loop (per pair v@M@v): {t_loop_sub:.2f} s for {nl} targets → {t_loop:.1f} s extrapolated to {T}")
    print(f"ours, GEMM float64:          {t64:.3f} s   {t_loop / t64:8.0f}× the loop   "
          f"({forms / t64 / 1e6:.0f} M forms/s, max |Δ locality| {err64:.1e})")
    print(f"ours, GEMM float32:          {t32:.3f} s   {t_loop / t32:8.0f}× the loop   "
          f"(max |Δ locality| {err32:.1e})")
    print(f"batched M·Vᵀ float64:       {tbmm:.3f} s   {t_loop / tbmm:8.0f}× the loop   "
          f"(max |Δ locality| {errb:.1e})")


if __name__ == "__main__":
    main()
