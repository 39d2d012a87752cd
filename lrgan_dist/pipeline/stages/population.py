"""Population stage (reduce, Ray tasks): what the whole sample says about a region.

1. **Distributed tree reduction** of the region Grams over all done samples: one Ray
   task per store chunk sums its done samples' ``M_R`` and ``M_B`` in float64; partial
   sums are combined pairwise by further tasks (a binary tree of depth ⌈log₂ U⌉ for U
   chunks), so no task holds more than one chunk of Grams or two partial sums. The
   population Grams are the means ``M̄ = Σ_i M_i / n``. Addition order is fixed by the
   tree (left + right), so the result is deterministic and equals a single-process
   float64 sum to ~1e-15 relative.
2. **Population directions**: every per-sample method of the spec run on the mean Grams
   (a batch of one problem), plus the population-only methods (``ganspace`` on the
   stored latents; ``sefa`` on the generator's weights when it has them).
3. **Consensus subspace** across per-sample subspaces: the mean projector
   ``P̄ = (1/n) Σ_i V_iᵀ V_i`` over each sample's carrying directions (≥ 1 % of its
   largest region energy, orthonormalized); its top eigenvectors and full spectrum
   (eigenvalue 1 = a direction every sample contains).

Store: ``population/<region>/<label>/{vectors [d, d], spectrum [d], rank [], gram_in,
gram_out [d, d] (f64), count}`` and ``population/<region>/<label>/consensus/{vectors,
spectrum}``; population-only methods under ``population/_latent/<label>``. Written by
the driver only (one writer), attrs carry the method parameters and their hash.

Cost: reading every Gram once (2R·N·d² numbers), U + U−1 tiny tasks; the factorizations
are single d×d problems; the consensus is one eigh of d×d after N small SVDs.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrgan_dist.core.subspaces import carrying, orth
from lrgan_dist.core.methods import get_method
from lrgan_dist.spec import JobSpec
from lrgan_dist.store.zarrstore import DONE, Store

__all__ = ["chunk_gram_sum", "combine", "tree_reduce", "run_population", "consensus_subspace"]

# Test hook: path of a marker file; the first reduction task that finds it absent creates
# it and dies (os._exit), so tests can check that a killed task is retried correctly.
_FAIL_ONCE = os.environ.get("LRGAN_TEST_FAIL_REDUCE_ONCE", "")


def chunk_gram_sum(store_uri: str, unit: tuple[int, int], regions: list[str]) -> dict[str, Any]:
    """Σ over the done samples of one chunk of M_R and M_B, float64, per region."""
    if _FAIL_ONCE and not Path(_FAIL_ONCE).exists():
        Path(_FAIL_ONCE).write_text("killed once")
        os._exit(1)
    store = Store.open(store_uri)
    a, b = unit
    ok = store.status()[a:b] == DONE
    out: dict[str, Any] = {"count": int(ok.sum())}
    for r in regions:
        for key in ("gram_in", "gram_out"):
            g = store.read(f"regions/{r}/{key}", a, b)[ok].astype(np.float64)
            out[f"{r}/{key}"] = g.sum(axis=0) if g.shape[0] else np.zeros(g.shape[1:], dtype=np.float64)
    return out


def combine(x: dict[str, Any], y: dict[str, Any]) -> dict[str, Any]:
    return {k: x[k] + y[k] for k in x}


def tree_reduce(ray: Any, leaves: list[Any], cpus: float, retries: int) -> dict[str, Any]:
    """Pairwise-combine object refs until one is left; returns its value."""
    task = ray.remote(combine).options(num_cpus=cpus, max_retries=retries)
    level = list(leaves)
    while len(level) > 1:
        nxt = [task.remote(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return ray.get(level[0])


def consensus_subspace(V: np.ndarray, M: np.ndarray, frac: float = 0.01) -> tuple[np.ndarray, np.ndarray, int]:
    """Top eigenvectors [d, d] (rows) and spectrum [d] of the mean projector of carrying subspaces.

    V [n, k, d] per-sample directions (NaN-padded), M [n, d, d] their region Grams.
    """
    sel = carrying(V, M, frac)
    d = V.shape[-1]
    P = np.zeros((d, d))
    used = 0
    for i in range(V.shape[0]):
        B = orth(V[i][sel[i]])
        if B.shape[0]:
            P += B.T @ B
            used += 1
    if used == 0:
        return np.full((d, d), np.nan), np.full(d, np.nan), 0
    w, U = np.linalg.eigh(P / used)
    return U[:, ::-1].T.copy(), w[::-1].copy(), used


def _write(group: Any, name: str, arr: np.ndarray, dims: tuple[str, ...]) -> None:
    a = group.create_array(name, shape=arr.shape, chunks=arr.shape if arr.ndim else (), dtype=arr.dtype,
                           dimension_names=dims if arr.ndim else None, overwrite=True)
    a[...] = arr


def run_population(spec: JobSpec, store: Store, ray: Any, show_progress: bool = True) -> dict[str, Any]:
    from lrgan_dist.pipeline.runtime import progress

    t0 = time.perf_counter()
    L = store.layout
    regions = list(L.regions)
    status = store.status()
    units = [(a, b) for a, b in L.chunks() if (status[a:b] == DONE).any()]
    if not units:
        return {"samples": 0, "seconds": 0.0}
    leaf = ray.remote(chunk_gram_sum).options(num_cpus=spec.compute.cpus_per_actor,
                                              max_retries=spec.compute.max_retries)
    with progress("population (reduce)", len(units), show_progress) as advance:
        leaves = [leaf.remote(store.uri, u, regions) for u in units]
        total = tree_reduce(ray, leaves, spec.compute.cpus_per_actor, spec.compute.max_retries)
        advance(len(units))
    n = total["count"]
    root = store.group.require_group("population")
    root.attrs.update({"samples": int(n), "reduction": "tree over chunks, float64"})
    done_idx = np.flatnonzero(status == DONE)
    # summed in float64, handed to the methods in the precision the Grams were computed in
    # (precision-aware tolerances, e.g. lowrankgan drop_tol="auto")
    prec = torch.float64 if L.gram_dtype == "float64" else torch.float32
    out: dict[str, Any] = {"samples": int(n), "groups": []}
    for r in regions:
        Min = total[f"{r}/gram_in"] / n
        Mout = total[f"{r}/gram_out"] / n
        for m in spec.methods:
            method = get_method(m.method, **m.params)
            if getattr(method, "population_only", False):
                continue
            res = method(torch.as_tensor(Min)[None].to(prec), torch.as_tensor(Mout)[None].to(prec))
            g = root.require_group(f"{r}/{m.label}")
            g.attrs.update({"method": m.method, "params": dict(m.params), "param_hash": method.param_hash(),
                            "samples": int(n)})
            _write(g, "vectors", res.vectors[0].float().numpy(), ("direction", "latent"))
            _write(g, "spectrum", res.spectrum[0].float().numpy(), ("component",))
            _write(g, "rank", np.asarray(int(res.rank[0]), dtype=np.int32), ())
            _write(g, "gram_in", Min, ("latent_i", "latent_j"))
            _write(g, "gram_out", Mout, ("latent_i", "latent_j"))
            # consensus across per-sample subspaces of the same (region, label)
            path = f"directions/{r}/{m.label}"
            if path in store.group:
                fst = np.asarray(store.group[f"{path}/status"][:])
                idx = done_idx[fst[done_idx] == DONE]
                if idx.size:
                    V = np.asarray(store.group[f"{path}/vectors"].get_orthogonal_selection((idx,))).astype(np.float64)
                    M = np.asarray(store.group[f"regions/{r}/gram_in"].get_orthogonal_selection((idx,))).astype(np.float64)
                    cv, cs, used = consensus_subspace(V, M)
                    c = g.require_group("consensus")
                    c.attrs.update({"samples": int(used), "carry_frac": 0.01})
                    _write(c, "vectors", cv.astype(np.float32), ("direction", "latent"))
                    _write(c, "spectrum", cs.astype(np.float32), ("component",))
            out["groups"].append({"region": r, "method": m.label, "rank": int(res.rank[0])})
    # population-only methods
    for m in spec.methods:
        method = get_method(m.method, **m.params)
        if not getattr(method, "population_only", False):
            continue
        res = None
        if hasattr(method, "from_latents") and m.method == "ganspace":
            lat = store.read("latents")[done_idx].astype(np.float64)
            res = method.from_latents(torch.as_tensor(lat))
        elif hasattr(method, "from_generator"):
            from lrgan_dist.apply.build import make_generator

            try:
                res = method.from_generator(make_generator(spec, "cpu"))
            except (AttributeError, TypeError, ValueError) as exc:
                out.setdefault("notes", []).append(f"{m.label}: not applicable to this generator ({exc})")
        if res is None:
            continue
        g = root.require_group(f"_latent/{m.label}")
        g.attrs.update({"method": m.method, "params": dict(m.params), "param_hash": method.param_hash()})
        _write(g, "vectors", res.vectors[0].float().numpy(), ("direction", "latent"))
        _write(g, "spectrum", res.spectrum[0].float().numpy(), ("component",))
        out["groups"].append({"region": "_latent", "method": m.label, "rank": int(res.rank[0])})
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out
