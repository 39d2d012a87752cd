"""Jacobians-stage throughput with 1 vs N actors, side by side in one run.

    python bench/bench_scaling.py [--samples 128] [--actors 2] [--resolution 64] [--cluster]

Runs the jacobians stage of a synthetic job twice on fresh stores, with 1 actor and
with N actors (embedded local Ray, or with --cluster a 2-node
``ray.cluster_utils.Cluster`` on this machine), and prints samples/second and the
ratio. Ray start-up is excluded: both runs share one Ray session and the timer covers
the stage only (actor construction included). Not a test.

Cost model: per sample, d JVPs through the generator (compute-bound, one core per
actor with torch_threads = 1), then 2R Gram products and one chunk write per unit.
Scaling is limited by cores (2 here), by the driver's scheduling (one ray.wait per
unit, ~ms), and by store writes (one zarr chunk per array per unit, ~ms on local disk).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--cluster", action="store_true", help="simulate 2 nodes with ray.cluster_utils.Cluster")
    args = ap.parse_args()

    from lrgan_dist.pipeline.runtime import ray_session
    from lrgan_dist.pipeline.scheduler import prepare_store, run_stage
    from lrgan_dist.spec import parse_spec

    def spec_for(actors: int, uri: str):
        return parse_spec({
            "generator": {"kind": "synthetic", "params": {"resolution": args.resolution}},
            "samples": {"count": args.samples, "seed": 0},
            "grid": {"resolution": args.resolution},
            "regions": {"eyes": {"box": [0.35, 0.28, 0.56, 0.72]}, "mouth": {"box": [0.56, 0.33, 0.76, 0.67]}},
            "methods": {"jacobian_svd": {}},
            "compute": {"actors": actors, "cpus_per_actor": 1, "torch_threads": 1},
            "store": {"uri": uri, "chunk_samples": args.chunk},
            "transfer": {"sources": 1},
        })

    cluster = None
    address = None
    if args.cluster:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                                "include_dashboard": False})
        cluster.add_node(num_cpus=max(1, args.actors - 1), node_ip_address="127.0.0.1")
        address = cluster.address
    tmp = tempfile.mkdtemp(prefix="lrgan-bench-")
    rates = {}
    try:
        with ray_session(address) as ray:
            for n in (1, args.actors):
                spec = spec_for(n, f"{tmp}/a{n}.zarr")
                store = prepare_store(spec, fresh=True)
                t0 = time.perf_counter()
                res = run_stage("jacobians", spec, store, ray, show_progress=False)
                dt = time.perf_counter() - t0
                rates[n] = res["computed"] / dt
                print(f"{n} actor(s): {res['computed']} samples in {dt:.2f} s -> {rates[n]:.2f} samples/s")
    finally:
        if cluster is not None:
            cluster.shutdown()
    print(f"ratio {args.actors} vs 1 actor: {rates[args.actors] / rates[1]:.2f}x "
          f"({'2-node simulated cluster' if args.cluster else 'embedded local Ray'}, {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
