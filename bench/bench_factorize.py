"""Factorize stage at scale: wall time and peak memory per worker against N.

    python bench/bench_factorize.py                       # d = 64: N = 500, 2000; d = 512: N = 50, 200
    python bench/bench_factorize.py --d64 2000 --d512 0   # one setting

What runs: the factorize stage of the pipeline (Ray tasks over store chunks, DESIGN.md §2)
with ``lowrankgan`` (default solver) on one region, on a store of N samples, 2 workers,
1 torch thread each.  The Grams are the synthetic generator's (eye box of the face,
``latent_dim`` = d): 16 template samples computed by the jacobians stage (not timed), tiled
to N, so every N factorises the same mix of problems and the time per sample is comparable.

Printed per setting: wall time of the stage, samples per second, and the peak resident
memory of the busiest worker (``ru_maxrss`` reported by each task; Ray reuses worker
processes, so it is the peak over every chunk the worker handled).  The cost model says
memory per task is bounded by one chunk (2·chunk·d² Gram values plus the solver's
(2m + 12)·d² per problem still iterating), independent of N: the peak should be flat in N.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import write_spec  # noqa: E402

from lrgan_dist.pipeline.scheduler import prepare_store, submit  # noqa: E402
from lrgan_dist.spec import load_spec  # noqa: E402
from lrgan_dist.store.zarrstore import DONE, Store  # noqa: E402

CHUNK = 16


def _spec(tmp: Path, d: int, n: int, name: str):
    box = [0.3628, 0.2968, 0.5473, 0.7033]  # SyntheticFaces.canonical_boxes()["eyes"] at R = 64
    job = write_spec(tmp / f"{name}.yaml", samples={"count": n, "seed": 0},
                     generator={"kind": "synthetic", "params": {"latent_dim": d, "resolution": 64, "seed": 0}},
                     grid={"resolution": 64}, regions={"eyes": {"box": box}},
                     methods={"lowrankgan": {"lam": 2 / math.sqrt(d), "rank_tol": 1e-5}},
                     compute={"actors": 2, "torch_threads": 1, "cpus_per_actor": 1},
                     store={"uri": str(tmp / f"{name}.zarr"), "chunk_samples": CHUNK})
    return load_spec(job)


def template(tmp: Path, d: int) -> dict[str, np.ndarray]:
    spec = _spec(tmp, d, CHUNK, f"template{d}")
    t0 = time.perf_counter()
    submit(spec, stages=("jacobians",), show_progress=False, report_dir=False)
    print(f"d = {d}: template Grams of {CHUNK} samples in {time.perf_counter() - t0:.1f} s (not timed below)")
    st = Store.open(spec.store.uri)
    assert (st.status() == DONE).all()
    return {k: st.read(k) for k in ("latents", "images", "regions/eyes/gram_in", "regions/eyes/gram_out")}


def run(tmp: Path, d: int, n: int, tpl: dict[str, np.ndarray]) -> None:
    spec = _spec(tmp, d, n, f"n{n}_d{d}")
    store = prepare_store(spec, fresh=True)
    for a, b in store.layout.chunks():
        store.write_unit(a, b, {k: v[: b - a] for k, v in tpl.items()}, np.full(b - a, DONE, np.uint8), [""] * (b - a))
    rep = submit(spec, stages=("factorize",), show_progress=False, report_dir=False)
    f = rep["stages"]["factorize"]
    print(f"d = {d:>3}, N = {n:>5}: factorize {f['seconds']:8.1f} s = {n / f['seconds']:6.2f} samples/s "
          f"({f['units']} chunks, 2 workers); peak worker RSS {f['peak_worker_rss_mb']:.0f} MiB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d64", default="500,2000", help="N values at d = 64 (comma-separated; 0 = skip)")
    ap.add_argument("--d512", default="50,200", help="N values at d = 512")
    args = ap.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    with tempfile.TemporaryDirectory(prefix="bench_factorize") as tmpd:
        tmp = Path(tmpd)
        for d, ns in ((64, args.d64), (512, args.d512)):
            ns = [int(x) for x in ns.split(",") if int(x) > 0]
            if not ns:
                continue
            tpl = template(tmp, d)
            for n in ns:
                run(tmp, d, n, tpl)


if __name__ == "__main__":
    main()
