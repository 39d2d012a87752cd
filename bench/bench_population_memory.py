"""Driver memory of the population stage, N = 200 vs N = 2000 at d = 64 (issue 12 item 3).

Each store is fabricated in a child process (random PSD Grams written through the store
API chunk by chunk, ``jacobian_svd`` directions by the factorize unit without Ray); a
fresh child then runs only the population stage on an embedded Ray and prints the
driver's peak Python/numpy allocation during the stage (tracemalloc) and its peak RSS
(getrusage; includes torch and Ray client start-up). For contrast it also measures
what the former all-in-driver consensus loaded: every done sample's directions and
Grams as [N, d, d] float64.

    python bench/bench_population_memory.py [--sizes 200,2000] [--chunk 100]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

D = 64


def _spec(uri: str, n: int, chunk: int):
    from lrgan_dist.spec import parse_spec

    return parse_spec({
        "generator": {"kind": "synthetic", "params": {"latent_dim": D, "resolution": 32}},
        "samples": {"count": n, "seed": 0}, "grid": {"resolution": 32},
        "regions": {"eyes": {"box": [0.35, 0.28, 0.56, 0.72]}},
        "methods": {"jacobian_svd": {}},
        "compute": {"cpus_per_actor": 1, "torch_threads": 1},
        "store": {"uri": uri, "chunk_samples": chunk},
    })


def build(uri: str, n: int, chunk: int) -> None:
    import numpy as np

    from lrgan_dist.pipeline.scheduler import prepare_store
    from lrgan_dist.pipeline.stages.factorize import factorize_unit, result_groups

    spec = _spec(uri, n, chunk)
    store = prepare_store(spec, fresh=True)
    rng = np.random.default_rng(0)
    L = store.layout
    for a, b in L.chunks():
        k = b - a
        A = rng.standard_normal((2, k, D, 8)).astype(np.float64)
        grams = (A @ A.transpose(0, 1, 3, 2) / 8).astype(np.float32)  # rank-8 PSD, [2, k, d, d]
        data = {"latents": rng.standard_normal((k, D)).astype(np.float32),
                "regions/eyes/gram_in": grams[0], "regions/eyes/gram_out": grams[1]}
        store.write_unit(a, b, data, np.ones(k, dtype=np.uint8), [""] * k)
    groups = result_groups(spec, store)
    for a, b in L.chunks():
        factorize_unit(spec, uri, (a, b), groups, 1)


def measure(uri: str, n: int, chunk: int) -> None:
    import resource
    import tracemalloc

    import numpy as np

    from lrgan_dist.pipeline.runtime import ray_session
    from lrgan_dist.pipeline.scheduler import run_stage
    from lrgan_dist.store.zarrstore import Store

    spec = _spec(uri, n, chunk)
    store = Store.open(uri, mode="a")
    with ray_session(num_cpus=2) as ray:
        tracemalloc.start()
        rep = run_stage("population", spec, store, ray, show_progress=False)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    tracemalloc.start()  # the former driver-side consensus input
    g = store.group
    idx = np.flatnonzero(store.status() == 1)
    V = np.asarray(g["directions/eyes/jacobian_svd/vectors"].get_orthogonal_selection((idx,))).astype(np.float64)
    M = np.asarray(g["regions/eyes/gram_in"].get_orthogonal_selection((idx,))).astype(np.float64)
    _, old_peak = tracemalloc.get_traced_memory()
    del V, M
    print(json.dumps({"n": n, "samples": rep["samples"], "stage_peak_mib": peak / 2**20, "rss_mib": rss,
                      "old_consensus_input_mib": old_peak / 2**20}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="200,2000")
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--role", choices=["build", "measure"], default=None)
    ap.add_argument("--uri")
    ap.add_argument("--n", type=int)
    args = ap.parse_args()
    if args.role:
        (build if args.role == "build" else measure)(args.uri, args.n, args.chunk)
        return
    rows = []
    tmp = tempfile.mkdtemp(prefix="lrgan-popmem-")
    for n in (int(s) for s in args.sizes.split(",")):
        uri = f"{tmp}/n{n}.zarr"
        base = [sys.executable, __file__, "--chunk", str(args.chunk), "--uri", uri, "--n", str(n)]
        subprocess.run([*base, "--role", "build"], check=True)
        out = subprocess.run([*base, "--role", "measure"], check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"{'N':>6} {'stage peak alloc MiB':>21} {'driver peak RSS MiB':>20} {'former consensus input MiB':>27}")
    for r in rows:
        print(f"{r['n']:>6} {r['stage_peak_mib']:>21.2f} {r['rss_mib']:>20.1f} {r['old_consensus_input_mib']:>27.1f}")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"ratio N={b['n']} / N={a['n']}: stage peak {b['stage_peak_mib'] / a['stage_peak_mib']:.2f}x, "
              f"RSS {b['rss_mib'] / a['rss_mib']:.2f}x, former input {b['old_consensus_input_mib'] / a['old_consensus_input_mib']:.1f}x")


if __name__ == "__main__":
    main()
