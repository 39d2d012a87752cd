"""Benchmark: the fast RPCA solver's warm start with and without its slow band, side by side.

    python bench/bench_warmstart.py                 # seven d = 512 pairs (~2 min on 2 cores)
    python bench/bench_warmstart.py --variants fast,plain,gamma0.3,gamma3

The fast solver (lrgan_dist.core.rpca, ``solver="fast"``) warm-starts its Douglas–Rachford
phase with an inexact ALM whose μ grows by 1.1 per iteration except in a *slow band*
(1.03 while μ ∈ [0.01, 1] × the μ rule's μ).  This benchmark solves both Grams of seven
d = 512 samples (λ = 1/60, the paper's setting) with each variant:

* ``fast`` — the default (slow band);
* ``plain`` — no slow band (``warm_slow_rho = 1.1``: the default before 2026-12-02);
* ``gamma0.3`` / ``gamma3`` — the default with the DR step at 0.3× / 3× 1/μ.

Pairs: a random-weight StyleGAN2 at samples 0–3 (``bench_rpca.stylegan2_grams``, the
benchmark pair is sample 0), the structured Grams of the test suite with seeds 0 and 1,
and the synthetic generator at latent_dim 512.  Printed per pair and variant: wall time,
iterations (M_R, M_B), the largest duality gap (a certificate) and the objective's
relative difference to the ``fast`` variant; then the totals and the ratio to ``fast``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lrgan_dist.core.rpca import RPCAConfig, rpca

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rpca import realistic_grams, stylegan2_grams, synthetic_grams  # noqa: E402

VARIANTS = {
    "fast": {},
    "plain": {"warm_slow_rho": RPCAConfig().warm_rho},   # the band's ρ = the ρ outside it
    "gamma0.3": {"gamma": 0.3},
    "gamma3": {"gamma": 3.0},
}


def pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = [(f"stylegan2 sample {s}", *stylegan2_grams(512, seed=s)) for s in range(4)]
    out += [(f"structured seed {s}", *realistic_grams(512, s)) for s in (0, 1)]
    out.append(("synthetic", *synthetic_grams(512)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="fast,plain")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("LRGAN_BENCH_THREADS", "2")))
    args = ap.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or "fast" not in names:
        ap.error(f"--variants: expected 'fast' and any of {list(VARIANTS)}, received {args.variants!r}")
    names = ["fast"] + [n for n in names if n != "fast"]   # the others are compared with it
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, float64, CPU, λ = 1/60")
    t0 = time.perf_counter()
    data = pairs()
    print(f"built {len(data)} pairs in {time.perf_counter() - t0:.1f} s")
    total = dict.fromkeys(names, 0.0)
    for label, M_R, M_B in data:
        M = torch.tensor(np.stack([M_R, M_B]), dtype=torch.float64)
        objs = {}
        for name in names:
            t = time.perf_counter()
            res = rpca(M, RPCAConfig(lam=1 / 60, **VARIANTS[name]))
            dt = time.perf_counter() - t
            total[name] += dt
            objs[name] = res.objective
            rel = ((res.objective - objs["fast"]) / objs["fast"]).abs().max().item() if "fast" in objs else 0.0
            print(f"{label:<22}{name:<10}{dt:8.2f} s  iterations {str(res.iterations.tolist()):<12}"
                  f" max gap {res.gap.max().item():.1e}  |Δobjective| vs fast {rel:.1e}"
                  f"  converged {bool(res.converged.all())}", flush=True)
    for name in names:
        print(f"total {name:<10}{total[name]:8.2f} s   ratio {name} / fast: {total[name] / total['fast']:.2f}")


if __name__ == "__main__":
    main()
