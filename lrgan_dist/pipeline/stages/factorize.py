"""Factorize stage (reduce, Ray tasks): per-sample Grams → directions, ranks, spectra.

Units are (store chunk, result group) pairs still pending: a Ray task reads the Grams of
one chunk for the group's region, runs the group's method on the whole chunk at once
(batched [n, d, d] problems, :mod:`lrgan_dist.core.methods`) and writes one chunk of the
group's arrays, its ``status`` last. A chunk finished for some groups resumes only the
others, and progress counts (chunk, group) units as they finish. Memory per task is
bounded by one chunk (2·n·d² Gram values plus the method's working set), independent
of N; the driver holds the status vectors [N] only.

Stage interface: ``plan(ctx)`` → pending (chunk, group) units, ``run(ctx)`` → summary.

Result groups are keyed ``directions/<region>/<label>``; each carries the method name,
its parameters and their hash. If the spec gives a label new parameters, results go
to a new group ``<label>@<hash8>`` and the old one is left untouched.

Cost: per chunk and region, each method's batched cost (RPCA: iterations × one
batched ``eigh`` of [n, d, d], O(n·d³) each); samples that failed in the jacobians
stage are marked failed here too without computing, and so are the samples of a
landmark region whose face was not found (``regions/<r>/found == 0``: NaN Grams for that
region only; the other regions of the sample are factorized).
"""
from __future__ import annotations

import time
from typing import Any, cast

import numpy as np
import torch

from lrgan_dist.apply.build import pick_device
from lrgan_dist.core.matfree import compressed_directions
from lrgan_dist.core.methods import get_method
from lrgan_dist.core.subspaces import span_dimension
from lrgan_dist.pipeline.runtime import StageContext, StageHooks, run_tasks
from lrgan_dist.pipeline.stages.jacobians import matfree_config
from lrgan_dist.spec import JobSpec
from lrgan_dist.store.zarrstore import DONE, FAILED, PENDING, Store, diagnostic_fill

NAME = "factorize"

__all__ = ["result_groups", "pending_units", "factorize_unit", "plan", "run", "SPAN", "direction_rows", "in_subset"]

Group = tuple[str, str, str]  # (region, label, group path)
Unit = tuple[int, int, Group]  # (chunk start, chunk stop, group)


#: the stage's own per-sample diagnostic, for every method (store layout row ``directions_span``)
SPAN = "span"


def direction_rows(spec: JobSpec, d: int) -> int:
    """The most direction rows a sample can get (the ``r`` of ``directions/…/vectors`` [N, r, d]):
    d from the dense Grams; on matrix-free stores min(2k, d), the size of the compressed
    problem's union basis (:func:`lrgan_dist.core.matfree.compressed_directions`), so a
    W+ store at d = 9 216 holds 2k·d numbers per sample and method, not d²."""
    if spec.compute.jacobian != "matfree":
        return d
    return min(2 * matfree_config(spec, d).k, d)


def result_groups(spec: JobSpec, store: Store) -> list[tuple[str, str, str]]:
    """(region, label, group path) for every per-sample method of the spec; creates groups."""
    out = []
    rows = direction_rows(spec, store.layout.d)
    for m in spec.methods:
        method = get_method(m.method, **m.params)
        if getattr(method, "population_only", False):
            continue
        for r in store.layout.regions:
            path = store.direction_group(r, m.label, m.method, m.params, method.param_hash(),
                                         _schema(method, store.layout.d), rows=rows)
            out.append((r, m.label, path))
    return out


def _schema(method: Any, d: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The method's per-sample diagnostics and the stage's own (the span dimension)."""
    return {**method.diagnostics_schema(d), SPAN: ("i4", ())}


def in_subset(spec: JobSpec, label: str, start: int, stop: int) -> np.ndarray:
    """[stop − start] bool: the samples of [start, stop) that method ``label`` factorizes (its
    ``samples`` limit: the first N of the job; every sample without one)."""
    m = next(m for m in spec.methods if m.label == label)
    return np.arange(start, stop) < m.sample_limit(spec.samples.count)


def pending_units(spec: JobSpec, store: Store, groups: list[Group]) -> list[Unit]:
    """(chunk, group) pairs where some sample finished the jacobians stage but not this group
    (within the method's ``samples`` limit)."""
    s = store.status()
    out: list[Unit] = []
    todo = {}
    for g in groups:
        fs = np.asarray(store.group[f"{g[2]}/status"][:])
        todo[g] = (fs == PENDING) & (s != PENDING) & in_subset(spec, g[1], 0, s.shape[0])
    for a, b in store.layout.chunks():  # chunk-major: a chunk's groups run close together
        out.extend((a, b, g) for g in groups if todo[g][a:b].any())
    return out


def factorize_unit(spec: JobSpec, store_uri: str, unit: tuple[int, int], groups: list[Group],
                   torch_threads: int | None = None, hooks: StageHooks | None = None) -> dict[str, Any]:
    """Factorize one chunk for each of ``groups``. Ray-free; idempotent."""
    if torch_threads:
        torch.set_num_threads(torch_threads)
    if hooks is not None:
        hooks.before_unit(NAME, unit)
    t0 = time.perf_counter()
    start, stop = unit
    store = Store.open(store_uri, mode="a")
    device = pick_device(spec.compute.factorize_device)
    status = store.status()[start:stop]
    sample_ok = status == DONE
    labels = {m.label: m for m in spec.methods}
    n, d = stop - start, store.layout.d
    by_region: dict[str, Any] = {}
    region_ok: dict[str, np.ndarray] = {}
    matfree = spec.compute.jacobian == "matfree"  # issue 17: eigenpairs, not Grams
    done = failed = 0
    for region, label, path in groups:
        if region not in by_region:
            region_ok[region] = sample_ok & store.region_found(region, start, stop)  # no face: left out
        if region not in by_region and matfree:
            by_region[region] = _read_matfree(store, region, start, stop, region_ok[region], device)
        elif region not in by_region:
            gi = store.read(f"regions/{region}/gram_in", start, stop)
            go = store.read(f"regions/{region}/gram_out", start, stop)
            # in the store's precision: methods iterate in float64 but read the Grams'
            # precision for their tolerances (lowrankgan drop_tol="auto")
            by_region[region] = (torch.as_tensor(gi[region_ok[region]], device=device),
                                 torch.as_tensor(go[region_ok[region]], device=device))
        sub = in_subset(spec, label, start, stop)
        ok = region_ok[region] & sub
        m = labels[label]
        method = get_method(m.method, **m.params)
        rows = int(store.group[f"{path}/vectors"].shape[1])  # direction_rows when the group was made
        vectors = np.full((n, rows, d), np.nan, dtype=np.float32)
        rank = np.full(n, -1, dtype=np.int32)
        spectrum = np.full((n, rows), np.nan, dtype=np.float32)
        # failed: the sample failed upstream or has no face in this region; outside the method's
        # samples limit: pending (never computed, never failed)
        st = np.where(sub & ((status == FAILED) | ((status == DONE) & ~ok)), FAILED, PENDING).astype(np.uint8)
        keep = torch.as_tensor(sub[region_ok[region]])  # rows of the region's inputs this method factorizes
        inputs = by_region[region] if bool(keep.all()) else (
            {k: v[keep] for k, v in by_region[region].items()} if matfree else tuple(x[keep] for x in by_region[region]))
        g_in, g_out = (inputs["basis_in"], None) if matfree else inputs
        if g_in.shape[0]:
            res = (compressed_directions(m.method, m.params, **cast(dict[str, Any], inputs)) if matfree
                   else method(g_in, cast(torch.Tensor, g_out)))
            v = res.vectors.detach().float().cpu().numpy()
            kd = min(v.shape[1], rows)  # matfree: [B, k or 2k, d] rows into the [n, rows, d] array
            vectors[ok, :kd] = v[:, :kd]
            rank[ok] = np.minimum(res.rank.detach().cpu().numpy(), kd)
            spectrum[ok, :kd] = res.spectrum.detach().float().cpu().numpy()[:, :kd]
            good = np.isfinite(v[:, 0, :]).all(axis=1) | (rank[ok] == 0)
            st_ok = np.where(good, DONE, FAILED).astype(np.uint8)
            st[ok] = st_ok
        # the method's per-sample diagnostics (RPCA iterations, gaps, ranks, ...): fill values
        # (NaN / -1 / 0) for samples not computed here
        diag = {}
        for key, (dtype, tail) in _schema(method, d).items():
            full = np.full((n, *tail), diagnostic_fill(dtype), dtype=dtype)
            val = res.diagnostics.get(key) if g_in.shape[0] else None
            if key == SPAN and g_in.shape[0]:
                full[ok] = span_dimension(vectors[ok])
            elif val is not None:
                full[ok] = val.detach().cpu().numpy().astype(dtype)
            diag[key] = full
        store.write_directions(path, start, stop, vectors, rank, spectrum, st, diag)
        done += int((st == DONE).sum())
        failed += int((st == FAILED).sum())
    return {"unit": unit, "done": done, "failed": failed, "seconds": time.perf_counter() - t0,
            "peak_rss_mb": _peak_rss_mb()}


def _read_matfree(store: Store, region: str, start: int, stop: int, ok: np.ndarray, device: Any) -> dict[str, Any]:
    """The matrix-free arrays of one chunk and region (samples ``ok``) as compressed_directions' kwargs."""
    out: dict[str, Any] = {}
    for key in ("basis_in", "eig_in", "basis_out", "eig_out", "union_in", "union_out"):
        path = f"regions/{region}/{key}"
        if path in store.group:
            out[key] = torch.as_tensor(store.read(path, start, stop)[ok], device=device)
    return out


def plan(ctx: StageContext) -> tuple[list[Group], list[Unit]]:
    groups = result_groups(ctx.spec, ctx.store)
    return groups, pending_units(ctx.spec, ctx.store, groups)


def run(ctx: StageContext) -> dict[str, Any]:
    groups, units = plan(ctx)
    names = [g[2] for g in groups]
    if not units:
        return {"units": 0, "groups": names, "seconds": 0.0}
    t0 = time.perf_counter()
    peak = 0.0

    def on_result(unit: Unit, out: dict[str, Any]) -> None:
        nonlocal peak
        peak = max(peak, float(out.get("peak_rss_mb", 0.0)))

    calls = [(u, (ctx.spec, ctx.store.uri, (u[0], u[1]), [u[2]], ctx.resources.threads, ctx.hooks)) for u in units]
    run_tasks(ctx, factorize_unit, calls, NAME, on_result=on_result)
    return {"units": len(units), "chunks": len({(a, b) for a, b, _ in units}), "groups": names,
            "seconds": time.perf_counter() - t0, "peak_worker_rss_mb": round(peak, 1)}


def _peak_rss_mb() -> float:
    """Peak resident memory of this (worker) process so far, MiB (Linux: ru_maxrss in KiB)."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except (ImportError, OSError):  # pragma: no cover - non-POSIX
        return float("nan")
