"""``submit --dry-run``: what a job would do, with nothing written and no Ray started.

Builds the generator once on the CPU (as the driver does before creating a store), plans
the store's layout, and reports: work units (store chunks) per stage that works per
sample, actors and the resources each one asks for (from ``compute`` and this machine;
on a cluster the real numbers come from the cluster at run time), and the bytes the
store's per-sample and per-direction arrays will hold uncompressed (from the layout
table, :mod:`lrgan_dist.store.layout`; the transfer and previews sections are small
next to them and are listed as not estimated).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from lrgan_dist.spec import JobSpec

__all__ = ["dry_run"]


class _LocalCluster:
    """Stands in for ``ray`` in :func:`worker_resources`: this machine's CPUs and GPUs."""

    def cluster_resources(self) -> dict[str, float]:
        try:
            import torch

            gpus = torch.cuda.device_count()
        except Exception:  # noqa: BLE001
            gpus = 0
        return {"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}


def dry_run(spec: JobSpec, address: str | None = None, stages: tuple[str, ...] | None = None) -> dict[str, Any]:
    from lrgan_dist.apply.build import make_generator
    from lrgan_dist.pipeline.runtime import worker_resources
    from lrgan_dist.pipeline.stages.factorize import direction_rows
    from lrgan_dist.pipeline.stages.jacobians import matfree_config, plan_layout
    from lrgan_dist.store.layout import TABLE, geometry, matfree_names

    gen = make_generator(spec, "cpu")
    layout, _ = plan_layout(spec, gen)  # also checks the user's own latents against the generator
    res = worker_resources(spec, _LocalCluster())
    units = len(layout.chunks())
    labels = [m.label for m in spec.methods]
    # free symbols of the rows this job creates: direction rows, and the matrix-free k and union
    matfree = spec.compute.jacobian == "matfree"
    symbols: dict[str, Any] = {"r": direction_rows(spec, layout.d)}
    written: tuple[str, ...] = ()  # the matrix-free arrays of a region
    if matfree:
        cfg = matfree_config(spec, layout.d)
        symbols.update(k=cfg.k, u=2 * cfg.k)
        written = matfree_names(cfg.union)
    arrays: list[dict[str, Any]] = []
    skipped: list[str] = []
    for row in TABLE.values():
        if row.stage not in ("jacobians", "factorize"):
            if row.stage not in skipped:
                skipped.append(row.stage)
            continue
        if row.when == "keep_jacobians" and not layout.keep_jacobians:
            continue
        if matfree and row.kind in ("gram_in", "gram_out"):
            continue  # a store holds either the Grams or the matrix-free eigenpairs ...
        if row.kind.startswith("matfree_") and row.path.rsplit("/", 1)[1] not in written:
            continue  # ... of the parts this job writes (union only for compressed LowRankGAN)
        paths = [row.path]
        if "{region}" in row.path:
            paths = [p.replace("{region}", r) for p in paths for r in layout.regions]
        if "{label}" in row.path:
            paths = [p.replace("{label}", lab) for p in paths for lab in labels]
        for path in paths:
            if "{" in path:
                continue
            if row.when in ("static_mask", "per_sample_mask"):
                region = path.split("/")[1]
                if (region in layout.per_sample_masks) != (row.when == "per_sample_mask"):
                    continue
            if row.kind.startswith("region_") and row.kind not in ("region_mask", "region_mask_per_sample"):
                if path.split("/")[1] not in layout.landmark_regions:
                    continue
            try:
                geo = geometry(path, layout, **symbols)
            except ValueError:
                continue
            if geo.dtype is str:
                continue
            nbytes = int(np.prod(geo.shape, dtype=np.int64)) * np.dtype(geo.dtype).itemsize
            arrays.append({"path": path, "shape": list(geo.shape), "dtype": str(np.dtype(geo.dtype)), "bytes": nbytes})
    total = sum(a["bytes"] for a in arrays)
    return {
        "dry_run": True,
        "store": spec.store.uri,
        "address": address or "local",
        "fingerprint": spec.data_fingerprint(),
        "samples": layout.n,
        "latent_dim": layout.d,
        "image_shape": list(layout.image_shape),
        "grid": list(layout.grid),
        "regions": list(layout.regions),
        "methods": labels,
        "stages": list(stages) if stages else None,
        "units": {"jacobians": units, "factorize": units * len(layout.regions) * len(labels)},
        "chunk_samples": layout.chunk,
        "actors": min(res.actors, units),
        "resources_per_actor": {"CPU": res.cpus, "GPU": res.gpus, "torch_threads": res.threads},
        "resources_from": "this machine" if not address or address == "local" else
                          "this machine (the cluster's own numbers apply at run time)",
        "store_bytes": total,
        "store_bytes_human": _human(total),
        "arrays": arrays,
        "not_estimated": [s for s in skipped if s],
    }


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
