"""Transfer stage (map + reduce, Ray): cross-image generalization of local directions.

docs/architecture.md "transfer"; the numerics (equations, per-pixel normalization, cost model)
live in :mod:`lrgan_dist.core.scores`. LowRankGAN (Zhu et al., NeurIPS 2021) claims
that directions found at one sample edit the same region at other samples; this stage
measures that for sources S × targets T × result groups (region, method label) ×
directions k ≤ ``transfer.directions``:

1. **linearized** (Ray tasks, one per store chunk of targets, no generator): the
   source directions' quadratic forms with every target's Grams of the scoring
   region(s) (``transfer.score_on``, default the region itself): per-pixel energy
   inside/outside, locality. Each task writes exactly one chunk (along the target
   axis) of every ``transfer/linear`` array, ``transfer/linear/status`` last.
2. **realized** (actors holding one generator replica each, like the jacobians
   stage): for ``transfer.realized_pairs`` (source, target) pairs sampled from
   ``transfer.seed``, render ``x_j ± α·v`` for every α in ``transfer.strengths`` and
   measure masked per-pixel MSE inside/outside the target's region on the analysis
   grid (images pooled like the Jacobian). Units are chunks of pairs; one writer each,
   ``transfer/realized/status`` last.
3. **similarity** (one Ray task per result group): principal angles / projection
   distance between the carrying subspaces of ``transfer.similarity_samples`` samples,
   with an average-linkage display order.

Store layout written (all arrays carry ``dimension_names``; ``N`` samples, ``S``
sources, ``k`` = ``transfer.directions``, ``P`` pairs, ``A`` strengths, ``M``
similarity samples; chunks along the target/pair axis = ``store.chunk_samples``)::

    transfer/                                   attrs: linear, realized, similarity (config + hash)
      linear/sources                            i32 [S]            source sample indices
      linear/status                             u8  [N]            1 = target scored (written last)
      linear/targets/<scored>/area_in           f32 [N]            ΣR of the target's mask
      linear/targets/<scored>/area_out          f32 [N]            ΣB = Σ(1 − R)
      linear/targets/<scored>/mean_energy       f32 [N]            (tr M_R + tr M_B)/d (inert rule)
      linear/<region>/<label>/vectors           f32 [S, k, d]      the directions used (signs aligned)
      linear/<region>/<label>/source_energy     f32 [S, k]         vᵀM_R v at the source
      linear/<region>/<label>/source_share      f32 [S, k]         / source's largest
      linear/<region>/<label>/carrying          bool [S, k]        share ≥ carry_frac
      linear/<region>/<label>/on/<scored>/energy_in    f32 [S, N, k]   vᵀM_R^{(j)} v (per pixel)
      linear/<region>/<label>/on/<scored>/energy_out   f32 [S, N, k]   vᵀM_B^{(j)} v (per pixel)
      linear/<region>/<label>/on/<scored>/locality     f32 [S, N, k]
      realized/pairs                            i32 [P, 2]         (source, target) samples
      realized/strengths                        f32 [A]
      realized/status                           u8  [P]            written last per chunk
      realized/<region>/<label>/on/<scored>/energy_in  f32 [P, k, A, 2]  masked MSE / α², sign −, +
      realized/<region>/<label>/on/<scored>/energy_out f32 [P, k, A, 2]
      similarity/samples                        i32 [M]
      similarity/<region>/<label>/similarity    f32 [M, M]         Σcos²θ / max rank
      similarity/<region>/<label>/projection_distance f32 [M, M]
      similarity/<region>/<label>/max_angle     f32 [M, M]         degrees
      similarity/<region>/<label>/rank          i32 [M]            carrying subspace dimension
      similarity/<region>/<label>/order         i32 [M]            display order (positions)

``<label>`` is the result group's name under ``directions/<region>/`` (the method
label, or ``label@hash8`` when the label's parameters changed). Targets with
``linear/status == 0`` hold NaN. Each part carries a hash of its configuration;
a changed configuration (other sources, directions, groups, pairs, strengths, ...)
rebuilds that part, an unchanged one resumes: finished chunks are skipped.

Cost model: see :mod:`lrgan_dist.core.scores` — per target chunk of n, 2·|scored|·S·k·n·d²/2
flops per group as one GEMM (one task per chunk, holding one chunk of Grams); per pair
1 + 2·A·Σk generator passes (actors, one chunk of pairs per unit); per similarity group
one task holding M·(d² + k·d) numbers. The driver holds the sources' directions and Grams
(S·d² each) and the status vectors.

Stage interface: ``plan(ctx)`` → :class:`TransferPlan`, ``run(ctx)`` → summary.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from lrgan_dist.core.digest import json_sha256, to_jsonable
from lrgan_dist.core.scores import (
    cluster_order,
    headline,
    inert,
    linearized_transfer,
    locality_share,
    masked_energy,
    mean_energy,
    realized_locality,
    sample_pairs,
)
from lrgan_dist.core.subspaces import orth_bases, source_energy, subspace_similarity
from lrgan_dist.pipeline.replica import GeneratorReplica
from lrgan_dist.pipeline.runtime import StageContext, StageHooks, run_actors, run_tasks
from lrgan_dist.spec import JobSpec
from lrgan_dist.store.aligned import read_directions
from lrgan_dist.store.zarrstore import DONE, PENDING, Store, StoreError, attrs_of, create_array, read_rows, subgroup

NAME = "transfer"

__all__ = ["TransferGroup", "TransferPlan", "plan_transfer", "plan", "run", "run_transfer", "linear_unit",
           "similarity_unit", "TransferWorker", "RESERVED_NAMES"]

# Fixed array/group names inside transfer/{linear,realized,similarity}; a region may not use them.
RESERVED_NAMES = ("sources", "status", "targets", "pairs", "strengths", "samples")


@dataclass(frozen=True)
class TransferGroup:
    region: str  # region the directions were found on
    label: str  # result group name under directions/<region>/
    method: str  # registry name of the method
    path: str  # directions/<region>/<label>
    param_hash: str
    params: dict = field(default_factory=dict)
    scored_on: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.region}/{self.label}"


@dataclass(frozen=True)
class TransferPlan:
    sources: tuple[int, ...]
    targets: tuple[int, ...]
    k: int
    carry_frac: float
    groups: tuple[TransferGroup, ...]
    pairs: tuple[tuple[int, int], ...]
    strengths: tuple[float, ...]
    similarity_samples: tuple[int, ...]
    chunk: int
    realized_dtype: str = "float32"
    notes: tuple[str, ...] = ()

    @property
    def scored_regions(self) -> tuple[str, ...]:
        return tuple(sorted({s for g in self.groups for s in g.scored_on}))

    def linear_config(self) -> dict[str, Any]:
        return {"sources": list(self.sources), "k": self.k, "carry_frac": self.carry_frac,
                "groups": [_group_json(g) for g in self.groups]}

    def realized_config(self) -> dict[str, Any]:
        return {"linear": json_sha256(self.linear_config()), "pairs": [list(p) for p in self.pairs],
                "strengths": list(self.strengths), "dtype": self.realized_dtype}

    def similarity_config(self) -> dict[str, Any]:
        return {"samples": list(self.similarity_samples), "carry_frac": self.carry_frac,
                "groups": [{"region": g.region, "label": g.label, "param_hash": g.param_hash} for g in self.groups]}


def _group_json(g: TransferGroup) -> dict[str, Any]:
    d = asdict(g)
    d["scored_on"] = list(g.scored_on)
    return d


# ----------------------------------------------------------------------------- planning


def _result_path(store: Store, region: str, label: str, param_hash: str) -> str | None:
    """The factorize stage's group for (region, label, params), or None if never written."""
    return store.find_result_group("directions", region, label, param_hash)


def _score_on(spec: JobSpec, region: str) -> tuple[str, ...]:
    val = spec.transfer.score_on.get(region, region)
    vals = [val] if isinstance(val, str) else list(val)
    return tuple(dict.fromkeys(vals))


def plan_transfer(spec: JobSpec, store: Store) -> TransferPlan:
    """Resolve sources, targets, groups, pairs and similarity samples from the store."""
    from lrgan_dist.core.methods import get_method

    t = spec.transfer
    L = store.layout
    regions = [r for r in (t.regions or L.regions)]
    for r in L.regions:
        if r in RESERVED_NAMES:
            raise StoreError(f"region name {r!r} clashes with a fixed name of the transfer layout "
                             f"{list(RESERVED_NAMES)}; expected another region name")
    missing = [r for r in regions if r not in L.regions]
    if missing:
        raise StoreError(f"{store.uri}: regions {missing} are not in the store; expected some of {list(L.regions)}")
    labels = set(t.methods) if t.methods else None
    status = store.status()
    done = status == DONE
    groups: list[TransferGroup] = []
    fdone = done.copy()
    for m in spec.methods:
        if labels is not None and m.label not in labels:
            continue
        method = get_method(m.method, **m.params)
        if getattr(method, "population_only", False):
            continue
        ph = method.param_hash()
        for r in regions:
            path = _result_path(store, r, m.label, ph)
            if path is None:
                raise StoreError(f"{store.uri}: directions/{r}/{m.label} with the spec's parameters is missing; "
                                 "expected the factorize stage to have run first (--stages factorize)")
            fdone &= np.asarray(store.group[f"{path}/status"][:]) == DONE
            scored = _score_on(spec, r)
            for s in scored:
                if s not in L.regions:
                    raise StoreError(f"transfer.score_on.{r}: region {s!r} is not in the store; expected one of {list(L.regions)}")
            groups.append(TransferGroup(region=r, label=path.rsplit("/", 1)[1], method=m.method, path=path,
                                        param_hash=ph, params=dict(m.params), scored_on=scored))
    if not groups:
        raise StoreError(f"{store.uri}: no per-sample result groups to study; expected transfer.methods/regions "
                         "to select at least one (region, method) with directions")
    notes: list[str] = []
    if isinstance(t.sources, int):
        cand = np.flatnonzero(fdone)
        sources = cand[: t.sources]
        if sources.size < t.sources:
            notes.append(f"only {sources.size} of {t.sources} requested sources are done in every result group")
    else:
        sources = np.array([i for i in t.sources if fdone[i]], dtype=np.int64)
        dropped = sorted(set(t.sources) - set(sources.tolist()))
        if dropped:
            notes.append(f"sources {dropped} skipped (not done in every result group)")
    if t.targets is None:
        targets = np.flatnonzero(done)
    else:
        targets = np.array(sorted({i for i in t.targets if done[i]}), dtype=np.int64)
        dropped = sorted(set(t.targets) - set(targets.tolist()))
        if dropped:
            notes.append(f"targets {dropped} skipped (not done)")
    if sources.size == 0 or targets.size == 0:
        raise StoreError(f"{store.uri}: {sources.size} sources and {targets.size} targets are done; "
                         "expected at least one of each (run the jacobians and factorize stages first)")
    if isinstance(t.similarity_samples, int):
        sim = np.flatnonzero(fdone)[: t.similarity_samples]
    else:
        sim = np.array(sorted({i for i in t.similarity_samples if fdone[i]}), dtype=np.int64)
    pairs = sample_pairs(sources, targets, t.realized_pairs, t.seed)
    return TransferPlan(
        sources=tuple(int(i) for i in sources),
        targets=tuple(int(i) for i in targets),
        k=min(t.directions, L.d),
        carry_frac=float(t.carry_frac),
        groups=tuple(groups),
        pairs=tuple((int(a), int(b)) for a, b in pairs),
        strengths=tuple(float(a) for a in t.strengths),
        similarity_samples=tuple(int(i) for i in sim),
        chunk=L.chunk,
        realized_dtype=t.realized_dtype,
        notes=tuple(notes),
    )


def _plan_from_attrs(store: Store) -> tuple[dict[str, Any], list[TransferGroup]]:
    lin = dict(attrs_of(store.group["transfer"])["linear"])
    groups = [TransferGroup(**{**g, "scored_on": tuple(g["scored_on"])}) for g in lin["config"]["groups"]]
    return lin, groups


# ----------------------------------------------------------------------------- array creation


def _arr(grp: Any, name: str, shape: tuple[int, ...], *_: Any, **__: Any) -> Any:
    """Create a transfer array: chunks, dtype, fill and dims come from the store's layout
    table (lrgan_dist.store.layout), which the remaining arguments merely repeat."""
    return create_array(grp, name, shape)


def _prepare_linear(store: Store, plan: TransferPlan) -> bool:
    """Create transfer/linear (or keep it when its config hash matches). Returns True if reset."""
    root = store.group.require_group("transfer")
    cfg = plan.linear_config()
    h = json_sha256(cfg)
    old = attrs_of(root).get("linear") or {}
    if old.get("hash") == h and "linear" in root:
        # Same computation: keep finished chunks; the target set may have grown.
        root.attrs["linear"] = {**old, "targets": list(plan.targets)}
        return False
    L = store.layout
    S, N, k, cs, d = len(plan.sources), L.n, plan.k, L.chunk, L.d
    lin = root.create_group("linear", overwrite=True)
    _arr(lin, "sources", (S,), (S,), "i4", ("source",), fill=-1)[...] = np.asarray(plan.sources, dtype=np.int32)
    _arr(lin, "status", (N,), (cs,), "u1", ("target",), fill=PENDING)
    for s in plan.scored_regions:
        ag = lin.require_group(f"targets/{s}")
        for name in ("area_in", "area_out", "mean_energy"):
            _arr(ag, name, (N,), (cs,), "f4", ("target",))
    for g in plan.groups:
        gg = lin.require_group(g.key)
        _arr(gg, "vectors", (S, k, d), (S, k, d), "f4", ("source", "direction", "latent"))
        _arr(gg, "source_energy", (S, k), (S, k), "f4", ("source", "direction"))
        _arr(gg, "source_share", (S, k), (S, k), "f4", ("source", "direction"))
        _arr(gg, "carrying", (S, k), (S, k), "bool", ("source", "direction"), fill=False)
        gg.attrs.update({"region": g.region, "label": g.label, "method": g.method, "params": dict(g.params),
                         "param_hash": g.param_hash, "directions_path": g.path})
        for s in g.scored_on:
            og = gg.require_group(f"on/{s}")
            for name in ("energy_in", "energy_out", "locality"):
                _arr(og, name, (S, N, k), (S, cs, k), "f4", ("source", "target", "direction"))
    _write_sources(store, plan)
    root.attrs["linear"] = {"hash": h, "config": cfg, "targets": list(plan.targets), "k": k,
                            "sources": list(plan.sources), "carry_frac": plan.carry_frac}
    return True


def _write_sources(store: Store, plan: TransferPlan) -> None:
    """Source-side arrays (driver; small): the k directions used and their energy shares."""
    k = plan.k
    src = list(plan.sources)
    gram_cache: dict[str, np.ndarray] = {}
    for g in plan.groups:
        V = read_directions(store, g.path, src).astype(np.float64)  # [S, d, d], signs aligned (realized ± edits)
        if g.region not in gram_cache:
            gram_cache[g.region] = read_rows(store.group[f"regions/{g.region}/gram_in"], src).astype(np.float64)
        se = source_energy(V, gram_cache[g.region], plan.carry_frac)
        gg = store.group[f"transfer/linear/{g.key}"]
        gg["vectors"][...] = V[:, :k].astype(np.float32)
        gg["source_energy"][...] = se["energy"][:, :k].astype(np.float32)
        gg["source_share"][...] = se["share"][:, :k].astype(np.float32)
        gg["carrying"][...] = se["carrying"][:, :k]


def linear_pending(store: Store) -> list[tuple[int, int]]:
    lin = dict(attrs_of(store.group["transfer"])["linear"])
    want = np.zeros(store.layout.n, dtype=bool)
    want[np.asarray(lin["targets"], dtype=np.int64)] = True
    st = np.asarray(store.group["transfer/linear/status"][:])
    todo = want & (st != DONE)
    return [(a, b) for a, b in store.layout.chunks() if todo[a:b].any()]


def linear_unit(store_uri: str, unit: tuple[int, int], torch_threads: int | None = None,
                hooks: StageHooks | None = None) -> dict[str, Any]:
    """Score every source direction at the targets of one store chunk; write that chunk. Ray-free."""
    if torch_threads:
        torch.set_num_threads(torch_threads)
    if hooks is not None:
        hooks.before_unit("transfer.linear", unit)
    t0 = time.perf_counter()
    a, b = unit
    store = Store.open(store_uri, mode="a")
    lin, groups = _plan_from_attrs(store)
    n = b - a
    want = np.zeros(n, dtype=bool)
    tg = np.asarray(lin["targets"], dtype=np.int64)
    tg = tg[(tg >= a) & (tg < b)] - a
    want[tg] = True
    base = store.group["transfer/linear"]
    grams: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    for s in sorted({s for g in groups for s in g.scored_on}):
        gi = store.read(f"regions/{s}/gram_in", a, b)[want]
        go = store.read(f"regions/{s}/gram_out", a, b)[want]
        m = store.region_mask(s, a, b).astype(np.float64)
        if m.ndim == 2:
            m = np.broadcast_to(m, (n, *m.shape))
        a_in = np.full(n, np.nan)
        a_out = np.full(n, np.nan)
        a_in[want] = m[want].sum(axis=(1, 2))
        a_out[want] = (1.0 - m[want]).sum(axis=(1, 2))
        me = np.full(n, np.nan)
        me[want] = mean_energy(gi, go)
        grams[s] = (gi, go, a_in, a_out)
        base[f"targets/{s}/area_in"][a:b] = a_in.astype(np.float32)
        base[f"targets/{s}/area_out"][a:b] = a_out.astype(np.float32)
        base[f"targets/{s}/mean_energy"][a:b] = me.astype(np.float32)
    k = int(lin["k"])
    S = len(lin["sources"])
    for g in groups:
        V = np.asarray(base[f"{g.key}/vectors"][...])  # [S, k, d]
        for s in g.scored_on:
            gi, go, a_in, a_out = grams[s]
            res = linearized_transfer(V, gi, go, a_in[want], a_out[want])
            for name in ("energy_in", "energy_out", "locality"):
                full = np.full((S, n, k), np.nan, dtype=np.float32)
                full[:, want] = res[name].astype(np.float32)
                base[f"{g.key}/on/{s}/{name}"][:, a:b, :] = full
    base["status"][a:b] = want.astype(np.uint8)  # last: the chunk is complete
    return {"unit": unit, "targets": int(want.sum()), "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- realized edits


def _prepare_realized(store: Store, plan: TransferPlan) -> bool:
    root = subgroup(store.group, "transfer")
    cfg = plan.realized_config()
    h = json_sha256(cfg)
    old = attrs_of(root).get("realized") or {}
    if old.get("hash") == h and "realized" in root:
        return False
    P, A, k = len(plan.pairs), len(plan.strengths), plan.k
    cs = plan.chunk
    rg = root.create_group("realized", overwrite=True)
    pairs = np.asarray(plan.pairs, dtype=np.int32).reshape(P, 2)
    _arr(rg, "pairs", (P, 2), (max(P, 1), 2), "i4", ("pair", "end"), fill=-1)[...] = pairs
    _arr(rg, "strengths", (A,), (max(A, 1),), "f4", ("strength",))[...] = np.asarray(plan.strengths, dtype=np.float32)
    _arr(rg, "status", (P,), (cs,), "u1", ("pair",), fill=PENDING)
    for g in plan.groups:
        for s in g.scored_on:
            og = rg.require_group(f"{g.key}/on/{s}")
            for name in ("energy_in", "energy_out"):
                _arr(og, name, (P, k, A, 2), (cs, k, A, 2), "f4", ("pair", "direction", "strength", "sign"))
    root.attrs["realized"] = {"hash": h, "pairs": P, "strengths": list(plan.strengths), "chunk": cs,
                              "linear_hash": cfg["linear"], "dtype": plan.realized_dtype}
    return True


def realized_pending(store: Store) -> list[tuple[int, int]]:
    st = np.asarray(store.group["transfer/realized/status"][:])
    cs = int(attrs_of(store.group["transfer"])["realized"]["chunk"])
    P = st.shape[0]
    return [(a, min(P, a + cs)) for a in range(0, P, cs) if (st[a:a + cs] != DONE).any()]


class TransferWorker(GeneratorReplica):
    """One generator replica; renders the realized edits of whole pair chunks. Ray-free.

    Per pair (i, j): the unedited x_j and x_j ± α·v for every group's first k finite
    directions of source i and every α; images pooled to the analysis grid like the
    Jacobian; energies per scoring region with the target's own mask.
    """

    def __init__(self, spec: JobSpec, store_uri: str, torch_threads: int | None = None,
                 hooks: StageHooks | None = None):
        super().__init__(spec, torch_threads, hooks)
        # float64 lifts the rendering noise floor for directions with tiny energy at a target
        self.dtype = torch.float64 if spec.transfer.realized_dtype == "float64" else torch.float32
        if self.dtype == torch.float64 and isinstance(self.generator, torch.nn.Module):
            self.generator = self.generator.to(dtype=torch.float64)
        self.store = Store.open(store_uri, mode="a")
        self.layout = self.store.layout
        self.batch = max(8, 4 * (spec.compute.batch_size or self.layout.chunk))
        lin, self.groups = _plan_from_attrs(self.store)
        self.k = int(lin["k"])
        src = [int(i) for i in lin["sources"]]
        self.source_row = {s: r for r, s in enumerate(src)}
        base = self.store.group["transfer/linear"]
        self.vectors = {g.key: np.asarray(base[f"{g.key}/vectors"][...], dtype=np.float32) for g in self.groups}
        self.strengths = np.asarray(self.store.group["transfer/realized/strengths"][...], dtype=np.float64)

    def _render(self, x: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        from lrgan_dist.core.jacobian import pool_image

        outs = []
        with torch.no_grad():
            for i in range(0, x.shape[0], self.batch):
                xb = x[i:i + self.batch].to(self.device, self.dtype)
                y = self.generator.forward(xb, anchor[i:i + self.batch].to(self.device, self.dtype))
                outs.append(pool_image(y.to(self.dtype), self.layout.grid, self.spec.grid.channels).cpu())
        return torch.cat(outs)

    def run(self, unit: tuple[int, int]) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.hooks.before_unit("transfer.realized", unit)
        p0, p1 = unit
        st = self.store
        rg = st.group["transfer/realized"]
        pairs = np.asarray(rg["pairs"][p0:p1])
        n, k, A = p1 - p0, self.k, self.strengths.size
        out = {(g.key, s, nm): np.full((n, k, A, 2), np.nan, dtype=np.float32)
               for g in self.groups for s in g.scored_on for nm in ("energy_in", "energy_out")}
        scored = sorted({s for g in self.groups for s in g.scored_on})
        signs = (-1.0, 1.0)
        for p, (src, tgt) in enumerate(pairs):
            x = torch.as_tensor(np.asarray(st.group["latents"][tgt]), dtype=torch.float64)  # [d]
            masks = {s: torch.as_tensor(st.region_mask(s, tgt, tgt + 1)).reshape(self.layout.grid) for s in scored}
            edits, index = [], []
            for g in self.groups:
                V = self.vectors[g.key][self.source_row[int(src)]]  # [k, d]
                for kk in range(k):
                    if not np.isfinite(V[kk]).all():
                        continue
                    v = torch.as_tensor(V[kk], dtype=torch.float64)
                    for ai, alpha in enumerate(self.strengths):
                        for si, sg in enumerate(signs):
                            edits.append(x + float(sg * alpha) * v)
                            index.append((g, kk, ai, si, float(alpha)))
            if not edits:
                continue
            X = torch.stack([x, *edits])
            Y = self._render(X, x.expand_as(X))
            delta = (Y[1:] - Y[:1]).double()
            al = torch.as_tensor([it[4] for it in index], dtype=torch.float64)
            for s in scored:
                t_in, t_out = masked_energy(delta, masks[s].double(), al)
                r_in, r_out = t_in.numpy(), t_out.numpy()
                for e, (g, kk, ai, si, _) in enumerate(index):
                    if s not in g.scored_on:
                        continue
                    out[(g.key, s, "energy_in")][p, kk, ai, si] = r_in[e]
                    out[(g.key, s, "energy_out")][p, kk, ai, si] = r_out[e]
        for (key, s, nm), arr in out.items():
            rg[f"{key}/on/{s}/{nm}"][p0:p1] = arr
        rg["status"][p0:p1] = np.full(n, DONE, dtype=np.uint8)  # last
        return {"unit": unit, "pairs": n, "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- similarity


def _prepare_similarity(store: Store, plan: TransferPlan) -> list[TransferGroup]:
    """Create transfer/similarity when its config changed; return the groups still to compute."""
    root = subgroup(store.group, "transfer")
    cfg = plan.similarity_config()
    h = json_sha256(cfg)
    old = attrs_of(root).get("similarity") or {}
    M = len(plan.similarity_samples)
    if old.get("hash") != h or "similarity" not in root:
        sg = root.create_group("similarity", overwrite=True)
        _arr(sg, "samples", (M,), (max(M, 1),), "i4", ("sample",), fill=-1)[...] = np.asarray(plan.similarity_samples, dtype=np.int32)
        root.attrs["similarity"] = {"hash": h, "samples": list(plan.similarity_samples)}
    sg = subgroup(root, "similarity")
    todo = []
    for g in plan.groups:
        if g.key in sg and sg[g.key].attrs.get("complete"):
            continue
        todo.append(g)
    return todo


def similarity_unit(store_uri: str, group: dict[str, Any], samples: Sequence[int], carry_frac: float,
                    torch_threads: int | None = None) -> dict[str, Any]:
    """Carrying subspaces of ``samples`` for one result group → M×M similarity arrays. Ray-free."""
    if torch_threads:
        torch.set_num_threads(torch_threads)
    t0 = time.perf_counter()
    g = TransferGroup(**{**group, "scored_on": tuple(group["scored_on"])})
    store = Store.open(store_uri, mode="a")
    idx = list(samples)
    V = read_rows(store.group[f"{g.path}/vectors"], idx).astype(np.float64)
    Mr = read_rows(store.group[f"regions/{g.region}/gram_in"], idx).astype(np.float64)
    keep = source_energy(V, Mr, carry_frac)["carrying"]
    Q, rank = orth_bases(V, keep)
    sim = subspace_similarity(Q, rank)
    order = cluster_order(sim["projection_distance"])
    M = len(idx)
    sg = store.group["transfer/similarity"].require_group(g.key)
    sg.attrs["complete"] = False
    for name in ("similarity", "projection_distance", "max_angle"):
        _arr(sg, name, (M, M), (max(M, 1), max(M, 1)), "f4", ("sample_a", "sample_b"))[...] = sim[name].astype(np.float32)
    _arr(sg, "rank", (M,), (max(M, 1),), "i4", ("sample",), fill=-1)[...] = rank.astype(np.int32)
    _arr(sg, "order", (M,), (max(M, 1),), "i4", ("position",), fill=-1)[...] = order.astype(np.int32)
    sg.attrs.update({"region": g.region, "label": g.label, "method": g.method, "param_hash": g.param_hash,
                     "complete": True})
    off = ~np.eye(M, dtype=bool)
    return {"group": g.key, "mean_similarity": float(np.nanmean(sim["similarity"][off])) if M > 1 else float("nan"),
            "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- driver


def transfer_summary(store: Store) -> dict[str, Any]:
    """Headline numbers per (region, label, scored): mean locality of carrying directions."""
    root = subgroup(store.group, "transfer")
    lin, groups = _plan_from_attrs(store)
    src = np.asarray(lin["sources"], dtype=np.int64)
    st = np.asarray(root["linear/status"][:]) == DONE
    rows = []
    real = attrs_of(root).get("realized")
    pairs = np.asarray(root["realized/pairs"][...]) if real and "realized" in root and real["pairs"] else None
    rst = np.asarray(root["realized/status"][:]) == DONE if pairs is not None else None
    for g in groups:
        carry = np.asarray(root[f"linear/{g.key}/carrying"][...])  # [S, k]
        for s in g.scored_on:
            og = root[f"linear/{g.key}/on/{s}"]
            e_in = np.asarray(og["energy_in"][...], dtype=np.float64)  # [S, N, k]
            e_out = np.asarray(og["energy_out"][...], dtype=np.float64)
            a_in = np.asarray(root[f"linear/targets/{s}/area_in"][:], dtype=np.float64)
            a_out = np.asarray(root[f"linear/targets/{s}/area_out"][:], dtype=np.float64)
            loc = locality_share(e_in, e_out, a_in[None, :, None], a_out[None, :, None])  # the share
            me = np.asarray(root[f"linear/targets/{s}/mean_energy"][:], dtype=np.float64)
            dead = inert(e_in, e_out, me[None, :, None])
            self_m = np.zeros(loc.shape[:2], dtype=bool)
            self_m[np.arange(src.size), src] = True
            hl = headline(loc, carry[:, None, :] & st[None, :, None], dead, self_m[:, :, None])
            row = {"region": g.region, "method": g.label, "scored_on": s,
                   "carrying_per_source": float(carry.sum(axis=1).mean()),
                   "self_locality": hl["self_locality"], "cross_locality": hl["cross_locality"]}
            if pairs is not None and rst.any():
                ein = np.asarray(root[f"realized/{g.key}/on/{s}/energy_in"][...], dtype=np.float64)
                eout = np.asarray(root[f"realized/{g.key}/on/{s}/energy_out"][...], dtype=np.float64)
                row_of = {int(v): i for i, v in enumerate(src)}
                pc = np.stack([carry[row_of[int(p[0])]] & ~dead[row_of[int(p[0])], int(p[1])] for p in pairs])  # [P, k]
                m = pc & rst[:, None] & (pairs[:, 0] != pairs[:, 1])[:, None]
                a0 = int(np.argmin(np.abs(np.asarray(real["strengths"], dtype=np.float64))))
                row["realized_strength"] = float(real["strengths"][a0])
                tp = pairs[:, 1].astype(np.int64)
                rl = realized_locality(ein[:, :, a0], eout[:, :, a0], a_in[tp, None], a_out[tp, None])
                row["realized_cross_locality"] = float(np.nanmean(rl[m])) if m.any() else float("nan")
            rows.append(row)
    return {"sources": len(src), "targets": int(st.sum()), "groups": rows}


def plan(ctx: StageContext) -> TransferPlan:
    return plan_transfer(ctx.spec, ctx.store)


def run_transfer(spec: JobSpec, store: Store, ray: Any, show_progress: bool = True) -> dict[str, Any]:
    """Convenience: the stage on its own (the scheduler calls :func:`run`)."""
    return run(StageContext(spec, store, ray, show_progress))


def run(ctx: StageContext) -> dict[str, Any]:
    """Run the whole transfer stage inside an initialised Ray session; idempotent and resumable.

    Returns a JSON-able summary: what was computed per part, seconds, notes and the
    headline localities per (region, method label, scoring region).
    """
    spec, store = ctx.spec, ctx.store
    t0 = time.perf_counter()
    plan = plan_transfer(spec, store)
    threads = ctx.resources.threads
    report: dict[str, Any] = {"sources": len(plan.sources), "targets": len(plan.targets),
                              "groups": [g.key for g in plan.groups], "notes": list(plan.notes)}

    # 1. linearized scores: one task per target chunk
    reset = _prepare_linear(store, plan)
    units = linear_pending(store)
    t1 = time.perf_counter()
    run_tasks(ctx, linear_unit, [(u, (store.uri, u, threads, ctx.hooks)) for u in units],
              "transfer (linearized)", weight=lambda u: u[1] - u[0])
    report["linear"] = {"reset": reset, "units": len(units), "seconds": round(time.perf_counter() - t1, 3)}

    # 2. realized edits: generator actors over chunks of pairs
    reset = _prepare_realized(store, plan)
    units = realized_pending(store)
    t1 = time.perf_counter()
    pool = run_actors(ctx, TransferWorker, (spec, store.uri, threads, ctx.hooks), units, "transfer (realized)",
                      weight=lambda u: u[1] - u[0])
    report["realized"] = {"reset": reset, "pairs": len(plan.pairs), "units": len(units), "restarts": pool["restarts"],
                          "seconds": round(time.perf_counter() - t1, 3)}

    # 3. subspace similarity: one task per result group
    todo = _prepare_similarity(store, plan)
    if len(plan.similarity_samples) < 2:
        todo = []
    t1 = time.perf_counter()
    run_tasks(ctx, similarity_unit,
              [(g.key, (store.uri, _group_json(g), plan.similarity_samples, plan.carry_frac, threads)) for g in todo],
              "transfer (similarity)")
    report["similarity"] = {"groups": len(todo), "samples": len(plan.similarity_samples),
                            "seconds": round(time.perf_counter() - t1, 3)}
    report["summary"] = transfer_summary(store)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return to_jsonable(report)
