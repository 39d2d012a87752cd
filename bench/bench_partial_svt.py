"""Benchmark: the RPCA's SVT with a full ``eigh`` against the warm-started partial eigensolver.

    python bench/bench_partial_svt.py                                  # random problems, d = 8 … 64
    python bench/bench_partial_svt.py --store runs/faces_dcgan.zarr --samples 8 --lams 0.1,0.03

Where ``eig="auto"`` switches to the partial SVT (``lrgan_dist.core.rpca.linalg._PARTIAL_MIN_D``)
was chosen from these figures (docs/benchmarks.md "The partial SVT's threshold"). Part 1: 32
random symmetric low-rank (rank d/4) + 5 %-sparse problems per d, default solver. Part 2 (with
``--store``): both Grams of the first ``--samples`` samples of every region of a store, per λ,
tol 1e-6, max_iter 1000 (the faces job's settings). Each line prints both wall times, their
ratio (full / partial) and whether the numerical ranks (relative tolerance 1e-5) agree; the
two runs are side by side in one process, 1 torch thread. Part 3 (with ``--store`` and
``--tols``): LowRankGAN's directions at looser RPCA tolerances against tol 1e-6 / gap 1e-4 on
the same Grams: time ratio, samples whose rank changed, and the largest sine between the top-3
direction subspaces.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lrgan_dist.core.lowrankgan import numerical_rank
from lrgan_dist.core.rpca import RPCAConfig, rpca


def _race(M: torch.Tensor, **kw: object) -> tuple[float, float, bool]:
    out = {}
    for eig in ("full", "partial"):
        t = time.perf_counter()
        res = rpca(M, RPCAConfig(eig=eig, **kw))  # type: ignore[arg-type]
        out[eig] = (time.perf_counter() - t, numerical_rank(res.sv, 1e-5))
    return out["full"][0], out["partial"][0], bool((out["full"][1] == out["partial"][1]).all())


def random_problems(d: int, B: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(B, d, max(2, d // 4), generator=g, dtype=torch.float64)
    S = torch.zeros(B, d, d, dtype=torch.float64)
    idx = torch.rand(B, d, d, generator=g) < 0.05
    S[idx] = torch.randn(int(idx.sum()), generator=g, dtype=torch.float64) * 5
    M = U @ U.mT + S
    return M + M.mT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="8,16,24,32,48,64")
    ap.add_argument("--store", default=None)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--lams", default="0.1,0.03")
    ap.add_argument("--tols", default="", help="tol:gap_tol pairs, e.g. 1e-5:1e-4,1e-5:1e-3 (part 3)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    for d in (int(x) for x in a.sizes.split(",")):
        tf, tp, same = _race(random_problems(d))
        print(f"random d={d:4d}: full {tf:6.2f} s  partial {tp:6.2f} s  full/partial {tf / tp:5.2f}  ranks equal {same}",
              flush=True)
    if a.store:
        import zarr

        g = zarr.open_group(a.store, mode="r", use_consolidated=False)
        for region in sorted(g["regions"].group_keys()):
            r = g["regions"][region]
            M = torch.cat([torch.from_numpy(np.asarray(r[k][: a.samples])).double() for k in ("gram_in", "gram_out")])
            M = M[torch.isfinite(M).all(dim=(1, 2))]
            for lam in (float(x) for x in a.lams.split(",")):
                tf, tp, same = _race(M, lam=lam, tol=1e-6, max_iter=1000)
                print(f"{region:10s} d={M.shape[-1]} λ={lam}: full {tf:6.2f} s  partial {tp:6.2f} s  "
                      f"full/partial {tf / tp:5.2f}  ranks equal {same}", flush=True)
        if a.tols:
            pairs = [(float(x.split(":")[0]), float(x.split(":")[1])) for x in a.tols.split(",")]
            tolerance_check(a.store, a.samples, [float(x) for x in a.lams.split(",")], pairs)


def tolerance_check(store: str, samples: int, lams: list[float], tols: list[tuple[float, float]]) -> None:
    import zarr

    from lrgan_dist.core.methods import get_method

    g = zarr.open_group(store, mode="r", use_consolidated=False)
    for region in ("eyes", "mouth_box"):
        if region not in g["regions"]:
            continue
        r = g["regions"][region]
        gi, go = (torch.from_numpy(np.asarray(r[k][:samples])) for k in ("gram_in", "gram_out"))
        ok = torch.isfinite(gi).all(dim=(1, 2))
        gi, go = gi[ok], go[ok]
        for lam in lams:
            runs = {}
            for tol, gap in [(1e-6, 1e-4), *tols]:
                m = get_method("lowrankgan", lam=lam, tol=tol, gap_tol=gap, max_iter=1000)
                t = time.perf_counter()
                res = m(gi, go)
                runs[(tol, gap)] = (time.perf_counter() - t, res)
            t0, ref = runs[(1e-6, 1e-4)]
            for (tol, gap), (t, res) in runs.items():
                sines = []
                for i in range(gi.shape[0]):
                    k = int(min(ref.rank[i], res.rank[i], 3))
                    if k:
                        qa = torch.linalg.qr(ref.vectors[i, :k].double().T)[0]
                        qb = torch.linalg.qr(res.vectors[i, :k].double().T)[0]
                        c = torch.linalg.svdvals(qa.T @ qb).min()
                        sines.append(float(torch.sqrt(torch.clamp(1 - c * c, min=0))))
                print(f"{region:10s} λ={lam} tol={tol:g} gap={gap:g}: {t:6.2f} s (x{t0 / t:4.2f} vs 1e-6)  "
                      f"ranks changed {int((res.rank != ref.rank).sum())}  max top-3 sine {max(sines, default=float('nan')):.1e}",
                      flush=True)


if __name__ == "__main__":
    main()
