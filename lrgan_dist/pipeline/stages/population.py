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
   ``P̄ = (1/n) Σ_i Q_iᵀ Q_i`` over each sample's carrying directions (the carrying rule
   and the orthonormal-basis policy of :mod:`lrgan_dist.core.subspaces`); its top
   eigenvectors and full spectrum (eigenvalue 1 = a direction every sample contains).
   The projector sum rides the same tree reduction as the Grams: each leaf returns
   ``Σ_i Q_iᵀ Q_i`` [d, d] and the count of samples with a non-empty subspace for every
   (region, result group), so the driver only eigendecomposes d×d sums.
4. **Sign alignment** (issue 15): per-sample directions have an arbitrary sign; one Ray
   task per chunk applies :func:`lrgan_dist.core.subspaces.align_signs` (each direction's
   sign against the population direction of smallest angle, same region and method; the
   consensus directions where the population has none: the array's ``reference`` attribute) and
   writes that chunk of ``population/<region>/<label>/sign`` int8 [n, r] (one writer per
   chunk; 0 where the sample or direction is not defined). Directions are never
   rewritten; readers apply the signs through :func:`lrgan_dist.store.aligned.read_directions`.

Store: ``population/<region>/<label>/{vectors [d, d], spectrum [d], rank [], gram_in,
gram_out [d, d] (f64), count, sign [n, d]}`` and ``population/<region>/<label>/consensus/{vectors,
spectrum}``; population-only methods under ``population/_latent/<label>``. Written by
the driver only (one writer; ``sign`` chunk by chunk by its tasks), attrs carry the method parameters and their hash; the
root's ``inputs`` attribute (a digest of the statuses and method parameters it was
computed from) is written last, and an unchanged digest skips the stage.

Cost model: reading every Gram and direction once (2R·N·d² + G·N·d² numbers) in U leaf
tasks (one per chunk, each holding one chunk) plus U − 1 combine tasks holding two
partial sums ((2R + G)·d² float64 each); per sample one batched SVD for the consensus
basis; the sign tasks read every direction once more (G·N·d² numbers, O(G·N·d²·p) flops
for p population directions) and write G·N·d bytes. The driver holds O((R + G)·d²) — flat in N — plus the status vectors [N]; its
factorizations are single d×d problems.

Stage interface: ``plan(ctx)`` → chunks with done samples and the consensus groups,
``run(ctx)`` → summary.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import numpy as np
import torch

from lrgan_dist.core.methods import get_method
from lrgan_dist.core.subspaces import CONSENSUS_MIN, align_signs, carrying, orth_bases
from lrgan_dist.pipeline.runtime import StageContext, StageHooks, progress
from lrgan_dist.spec import JobSpec
from lrgan_dist.store.zarrstore import DONE, Store, create_array

NAME = "population"
CARRY_FRAC = 0.01

__all__ = ["chunk_sums", "combine", "tree_reduce", "projector_sum", "consensus_from_sum", "sign_chunk", "plan", "run",
           "run_population"]

ConsensusGroup = tuple[str, str, str]  # (key "<region>/<label>", region, directions group path)


def projector_sum(V: np.ndarray, M: np.ndarray, frac: float = CARRY_FRAC) -> tuple[np.ndarray, int]:
    """Σ_i Q_iᵀ Q_i [d, d] over samples, Q_i the orthonormal basis of sample i's carrying
    directions, and the number of samples whose basis is not empty.

    V [n, k, d] per-sample directions (NaN-padded), M [n, d, d] their region Grams.
    """
    d = V.shape[-1]
    if V.shape[0] == 0:
        return np.zeros((d, d)), 0
    Q, rank = orth_bases(V, carrying(V, M, frac))  # [n, r, d] zero-padded, [n]
    Q = Q.reshape(-1, d)
    return Q.T @ Q, int((rank > 0).sum())


def consensus_from_sum(P: np.ndarray, used: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Top eigenvectors [d, d] (rows) and spectrum [d] of the mean projector P / used."""
    d = P.shape[0]
    if used == 0:
        return np.full((d, d), np.nan), np.full(d, np.nan), 0
    w, U = np.linalg.eigh(P / used)
    return U[:, ::-1].T.copy(), w[::-1].copy(), used


def chunk_sums(store_uri: str, unit: tuple[int, int], regions: list[str], consensus: list[ConsensusGroup],
               frac: float = CARRY_FRAC, hooks: StageHooks | None = None) -> dict[str, Any]:
    """One leaf of the reduction: over the done samples of one chunk, Σ M_R and Σ M_B per
    region (float64) and, per consensus group, the carrying projector sum and its count."""
    if hooks is not None:
        hooks.before_unit(NAME, unit)
    store = Store.open(store_uri)
    a, b = unit
    ok = store.status()[a:b] == DONE
    out: dict[str, Any] = {"count": int(ok.sum())}
    grams_in: dict[str, np.ndarray] = {}
    for r in regions:
        rok = ok & store.region_found(r, a, b)  # landmark region without a face: left out of this region
        out[f"{r}/count"] = int(rok.sum())
        for key in ("gram_in", "gram_out"):
            full = store.read(f"regions/{r}/{key}", a, b)
            g = full[rok].astype(np.float64)
            out[f"{r}/{key}"] = g.sum(axis=0) if g.shape[0] else np.zeros(g.shape[1:], dtype=np.float64)
            if key == "gram_in":
                grams_in[r] = full
    for key, r, path in consensus:
        sel = ok & (store.read(f"{path}/status", a, b) == DONE)
        V = store.read(f"{path}/vectors", a, b)[sel].astype(np.float64)
        P, used = projector_sum(V, grams_in[r][sel].astype(np.float64), frac)
        out[f"consensus/{key}/P"] = P
        out[f"consensus/{key}/used"] = used
        out[f"consensus/{key}/done"] = int(sel.sum())
    return out


def sign_chunk(store_uri: str, unit: tuple[int, int], groups: list[tuple[str, str, np.ndarray]]) -> int:
    """Write one chunk ``[a, b)`` of every ``sign`` array: for each (directions path, sign
    path, population directions U [p, d]), :func:`align_signs` of the done samples'
    directions (as stored) against U, 0 elsewhere. Returns the samples signed."""
    store = Store.open(store_uri, mode="a")
    a, b = unit
    ok = store.status()[a:b] == DONE
    n = 0
    for path, spath, U in groups:
        sel = ok & (store.read(f"{path}/status", a, b) == DONE)
        s = align_signs(store.read(f"{path}/vectors", a, b), U)
        s[~sel] = 0
        store.group[spath][a:b] = s
        n += int(sel.sum())
    return n


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


def _write(group: Any, name: str, arr: np.ndarray, dims: tuple[str, ...]) -> None:
    """Write a population array; geometry, dtype and dims come from the store's layout table
    (``dims`` is kept for the call sites; the table's names are written)."""
    create_array(group, name, arr.shape)[...] = arr


def _inputs_digest(spec: JobSpec, store: Store, consensus: list[ConsensusGroup]) -> str:
    """What the population results depend on: sample statuses, per-sample group statuses,
    the methods' parameters and the Gram precision."""
    h = hashlib.sha256()
    h.update(store.status().tobytes())
    for key, _, path in consensus:
        h.update(key.encode() + b"\0" + path.encode() + b"\0")
        h.update(store.read(f"{path}/status").tobytes())
    methods = [(m.label, m.method, get_method(m.method, **m.params).param_hash()) for m in spec.methods]
    h.update(json.dumps({"methods": methods, "regions": list(store.layout.regions),
                         "gram_dtype": store.layout.gram_dtype, "carry_frac": CARRY_FRAC}).encode())
    return h.hexdigest()


def plan(ctx: StageContext) -> tuple[list[tuple[int, int]], list[ConsensusGroup]]:
    """Chunks holding a done sample; (key, region, path) of every per-sample result group."""
    store = ctx.store
    status = store.status()
    units = [(a, b) for a, b in store.layout.chunks() if (status[a:b] == DONE).any()]
    consensus: list[ConsensusGroup] = []
    for m in ctx.spec.methods:
        method = get_method(m.method, **m.params)
        if getattr(method, "population_only", False):
            continue
        for r in store.layout.regions:
            path = store.find_result_group("directions", r, m.label, method.param_hash())
            if path is not None:
                consensus.append((f"{r}/{m.label}", r, path))
    return units, consensus


def run_population(spec: JobSpec, store: Store, ray: Any, show_progress: bool = True) -> dict[str, Any]:
    """Convenience: the stage on its own (the scheduler calls :func:`run`)."""
    return run(StageContext(spec, store, ray, show_progress))


def run(ctx: StageContext) -> dict[str, Any]:
    spec, store, ray = ctx.spec, ctx.store, ctx.ray
    t0 = time.perf_counter()
    L = store.layout
    regions = list(L.regions)
    units, consensus = plan(ctx)
    if not units:
        return {"samples": 0, "seconds": 0.0}
    digest = _inputs_digest(spec, store, consensus)
    root = store.group.require_group("population")
    expected = [store.find_result_group("population", r, m.label, get_method(m.method, **m.params).param_hash())
                for m in spec.methods for r in regions
                if not getattr(get_method(m.method, **m.params), "population_only", False)]
    signed = [store.find_result_group("population", r, key.split("/", 1)[1],
                                      str(store.group[path].attrs.get("param_hash", ""))) for key, r, path in consensus]
    if (dict(root.attrs).get("inputs") == digest and all(k and f"{k}/vectors" in store.group for k in expected)
            and all(k and f"{k}/sign" in store.group for k in signed)):
        return {"samples": int(root.attrs.get("samples", 0)), "skipped": True, "groups": [],
                "seconds": round(time.perf_counter() - t0, 3)}
    if "inputs" in root.attrs:
        del root.attrs["inputs"]
    cpus, retries = ctx.resources.cpus, spec.compute.max_retries
    leaf = ray.remote(chunk_sums).options(num_cpus=cpus, max_retries=retries)
    with progress("population (reduce)", len(units), ctx.show_progress) as advance:
        leaves = [leaf.remote(store.uri, u, regions, consensus, CARRY_FRAC, ctx.hooks) for u in units]
        total = tree_reduce(ray, leaves, cpus, retries)
        advance(len(units))
    n = total["count"]
    root.attrs.update({"samples": int(n), "reduction": "tree over chunks, float64"})
    status = store.status()
    done_idx = np.flatnonzero(status == DONE)
    by_key = {key: path for key, _, path in consensus}
    # summed in float64, handed to the methods in the precision the Grams were computed in
    # (precision-aware tolerances, e.g. lowrankgan drop_tol="auto")
    prec = torch.float64 if L.gram_dtype == "float64" else torch.float32
    out: dict[str, Any] = {"samples": int(n), "groups": []}
    sign_groups: list[tuple[str, str, np.ndarray]] = []
    for r in regions:
        n_r = int(total.get(f"{r}/count", n))  # < n for a landmark region with faces not found
        if n_r == 0:
            continue
        Min = total[f"{r}/gram_in"] / n_r
        Mout = total[f"{r}/gram_out"] / n_r
        for m in spec.methods:
            method = get_method(m.method, **m.params)
            if getattr(method, "population_only", False):
                continue
            res = method(torch.as_tensor(Min)[None].to(prec), torch.as_tensor(Mout)[None].to(prec))
            g = store.group[store.result_group("population", r, m.label, method.param_hash())[0]]
            g.attrs.update({"method": m.method, "params": dict(m.params), "param_hash": method.param_hash(),
                            "samples": n_r})
            _write(g, "vectors", res.vectors[0].float().numpy(), ("direction", "latent"))
            _write(g, "spectrum", res.spectrum[0].float().numpy(), ("component",))
            _write(g, "rank", np.asarray(int(res.rank[0]), dtype=np.int32), ())
            _write(g, "gram_in", Min, ("latent_i", "latent_j"))
            _write(g, "gram_out", Mout, ("latent_i", "latent_j"))
            # consensus across per-sample subspaces of the same (region, label): summed in the tree
            key = f"{r}/{m.label}"
            if key in by_key and total[f"consensus/{key}/done"]:
                cv, cs, used = consensus_from_sum(total[f"consensus/{key}/P"], int(total[f"consensus/{key}/used"]))
                # NaN vectors and spectrum when no sample has a carrying direction
                c = g.require_group("consensus")
                c.attrs.update({"samples": int(used), "carry_frac": CARRY_FRAC, "directions_path": by_key[key]})
                _write(c, "vectors", cv.astype(np.float32), ("direction", "latent"))
                _write(c, "spectrum", cs.astype(np.float32), ("component",))
                # sign reference: the population directions, else the consensus ones (core.subspaces, issue 15)
                rk = int(res.rank[0])
                ref, U = (("population", res.vectors[0, :rk].double().numpy()) if rk else
                          ("consensus", cv[np.nan_to_num(cs) > CONSENSUS_MIN]))
                rows = store.group[f"{by_key[key]}/vectors"].shape[1]  # the directions' r
                create_array(g, "sign", (L.n, rows)).attrs["reference"] = ref
                sign_groups.append((by_key[key], f"{g.path}/sign", U))
            out["groups"].append({"region": r, "method": m.label, "rank": int(res.rank[0])})
    if sign_groups:  # issue 15: per-sample signs against the population directions, one task per chunk
        task = ray.remote(sign_chunk).options(num_cpus=cpus, max_retries=retries)
        out["signed"] = int(sum(ray.get([task.remote(store.uri, u, sign_groups) for u in units])))
    # population-only methods
    for m in spec.methods:
        method = get_method(m.method, **m.params)
        if not getattr(method, "population_only", False):
            continue
        pres = None
        if hasattr(method, "from_latents") and m.method == "ganspace":
            lat = store.read("latents")[done_idx].astype(np.float64)
            pres = method.from_latents(torch.as_tensor(lat))
        elif hasattr(method, "from_generator"):
            from lrgan_dist.apply.build import make_generator

            try:
                pres = method.from_generator(make_generator(spec, "cpu"))
            except (AttributeError, TypeError, ValueError) as exc:
                out.setdefault("notes", []).append(f"{m.label}: not applicable to this generator ({exc})")
        if pres is None:
            continue
        g = store.group[store.result_group("population", "_latent", m.label, method.param_hash())[0]]
        g.attrs.update({"method": m.method, "params": dict(m.params), "param_hash": method.param_hash()})
        _write(g, "vectors", pres.vectors[0].float().numpy(), ("direction", "latent"))
        _write(g, "spectrum", pres.spectrum[0].float().numpy(), ("component",))
        out["groups"].append({"region": "_latent", "method": m.label, "rank": int(pres.rank[0])})
    root.attrs["inputs"] = digest  # last: the population results match these inputs
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out
