"""Previews stage (map, Ray actors): pre-rendered edit frames at matched edit size.

The report and the explorer show edits without ever rebuilding the generator from a
store (a stored spec may name user code, issue 14): the frames are rendered here, by
actors that already hold a generator replica, and stored as small uint8 arrays.

For every per-sample result group ``directions/<region>/<label>``, the same
``previews.samples`` samples (spread evenly over the samples done in every group, so
methods are compared on the same faces) and their top ``previews.directions``
directions v_k, this stage renders ``G(x + s·α_k·v_k)`` for every strength multiple
``s`` in ``previews.strengths`` (0 = the unedited sample). Per-sample directions are read
with their signs aligned to the population directions (:mod:`lrgan_dist.store.aligned`,
issue 15), so a positive strength moves every sample the same way.

The same samples are also edited along the **population directions** of each (region,
method) (``population/<region>/<label>/vectors``, the method on the mean Grams; rows
beyond the population rank are not defined) and along its **consensus directions**
(``.../consensus/vectors``, eigenvectors of the mean carrying projector, defined where the
eigenvalue exceeds :data:`lrgan_dist.core.subspaces.CONSENSUS_MIN`; signs aligned to the
population directions by the same rule). These are one direction set for every sample, rendered and scored exactly
like the per-sample ones (same matched-α rule, :func:`matched_step`).

The **population-only methods** (``ganspace``: PCA of the stored latents; ``sefa``: eigenvectors
of the generator's modulation weights) have no per-sample directions and no region: their one
direction set ``population/_latent/<label>/vectors`` (rows beyond their rank are NaN) is
rendered as a ``population`` group of *every* region, ``previews/<region>/<label>/population``,
on the same samples with the same rule; α, ``jnorm`` are region-free (JᵀJ), while
``energy_in``/``energy_out``/``locality``/``delta_share`` refer to that region.

**Matched edit size.** The step α_k is chosen per (sample, direction) so that the
first-order image change on the analysis grid is the same for every method::

    ‖J v‖² = vᵀ(ΣR·M_R + ΣB·M_B)v        (M_R, M_B are per-pixel Grams, README "Concepts")
    target = previews.size · median_i sqrt(tr(ΣR·M_R⁽ⁱ⁾ + ΣB·M_B⁽ⁱ⁾)/d)
    α_k    = target / ‖J v_k‖

``ΣR·M_R + ΣB·M_B = JᵀJ`` whatever the region, so ``target`` is the median (over the
rendered samples) of the image change of a *random* unit latent step, scaled by
``previews.size`` (default 1): strength 1 changes the image as much as a random unit
step would, and methods differ only in *where* the change goes. α is clamped at
16 × the sample's random-step α (a nearly inert direction would need a huge step;
``jnorm·alpha`` < target flags a clamp).

Per (sample, direction) the stage also stores scores from the Grams (``energy_in`` =
vᵀM_R v, ``energy_out`` = vᵀM_B v, ``locality`` = the share ΣR·vᵀM_R v / ‖J v‖² of the first-order change inside R),
the |ΔG| map of the largest strength
(per-pixel ‖G(x+αv) − G(x)‖ over channels, area-pooled to the preview size, uint8
scaled so that 255 = ``delta_scale``) and ``delta_share``, the share of the rendered
squared change that falls inside R on the analysis grid.

Store layout (rows of :mod:`lrgan_dist.store.layout`, S samples, K directions, A strengths)::

    previews/<region>/<label>/samples      i4 [S]
    previews/<region>/<label>/directions   i4 [S, K]          -1: direction not defined
    previews/<region>/<label>/strengths    f4 [A]             multiples of the matched size
    previews/<region>/<label>/alpha        f4 [S, K]          latent step of strength 1
    previews/<region>/<label>/{jnorm, energy_in, energy_out, locality, delta_share, delta_scale}  f4 [S, K]
    previews/<region>/<label>/frames       u1 [S, K, A, H', W', 3]
    previews/<region>/<label>/delta        u1 [S, K, H', W']
    previews/<region>/<label>/population/...   the same arrays for the population directions
                                               (population-only methods: only this subgroup)
    previews/<region>/<label>/consensus/...    the same arrays for the consensus directions

Group attributes: region, label, method, param_hash, directions_path, ``source``
(``sample``, ``population`` or ``consensus``), target, size, image_range, ``complete``
(written last). ``previews`` carries the configuration hash (which includes the population
stage's input digest, so new signs or population directions re-render); a changed
configuration re-renders every group, an unchanged one skips complete groups.

Cost model: per group S·(1 + K·A) generator forward passes (one batch per sample)
and S·K·d² flops for the scores; stored S·K·(A·3 + 1)·H'·W' bytes (quickstart: 27 groups
— 9 per-sample, 9 population, 9 consensus — × 4·3·(15 + 1)·64² ≈ 21 MB before
compression). The driver reads S Grams of one region (S·d² numbers) to fix the target.
Units are previews groups (one writer each), run on the actor pool like the jacobians stage.

Stage interface: ``plan(ctx)`` → :class:`PreviewPlan`, ``run(ctx)`` → summary.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lrgan_dist.core.digest import json_sha256, to_jsonable
from lrgan_dist.core.subspaces import CONSENSUS_MIN, align_signs, apply_signs, defined_rows, random_energy
from lrgan_dist.pipeline.replica import GeneratorReplica
from lrgan_dist.pipeline.runtime import StageContext, StageHooks, run_actors
from lrgan_dist.spec import JobSpec
from lrgan_dist.store.aligned import read_directions
from lrgan_dist.store.zarrstore import DONE, Store, read_rows

NAME = "previews"
#: α is clamped at this multiple of a random unit direction's α at the same sample
MAX_ALPHA_RATIO = 16.0

__all__ = ["PreviewPlan", "PreviewWorker", "plan", "run", "plan_previews", "matched_step", "preview_path",
           "MAX_ALPHA_RATIO", "CONSENSUS_MIN"]

#: (region, label, method, param_hash, directions path, source) of one previews group
Unit = tuple[str, str, str, str, str, str]


def preview_path(region: str, label: str, source: str = "sample") -> str:
    """Store path of a previews group: ``previews/<region>/<label>`` (+ ``/population``, ``/consensus``)."""
    base = f"previews/{region}/{label}"
    return base if source == "sample" else f"{base}/{source}"


def _random_jnorm(G: np.ndarray) -> np.ndarray:
    """‖J u‖ of a random unit direction u, ``sqrt(tr JᵀJ / d)``, for G = JᵀJ [S, d, d] → [S]."""
    return np.sqrt(np.maximum(random_energy(G), 0.0))


def matched_step(V: np.ndarray, gi: np.ndarray, go: np.ndarray, a_in: np.ndarray, a_out: np.ndarray,
                 target: float) -> dict[str, np.ndarray]:
    """The matched edit size (module docstring), for directions V [S, K, d] at S samples.

    gi, go [S, d, d] per-pixel Grams M_R, M_B; a_in, a_out [S] areas ΣR, ΣB. Returns [S, K]
    arrays ``alpha`` = min(target / ‖J v‖, MAX_ALPHA_RATIO · target / ‖J u‖_random) (NaN for
    undefined rows: NaN or zero v), ``jnorm`` = ‖J v‖ = sqrt(ΣR·vᵀM_R v + ΣB·vᵀM_B v),
    ``energy_in``/``energy_out`` (vᵀM_R v, vᵀM_B v), ``locality`` (the share
    ΣR·vᵀM_R v / ‖J v‖²) and ``finite`` (bool, the row is defined).
    """
    finite, Vz, _ = defined_rows(V)
    with np.errstate(invalid="ignore", divide="ignore"):
        e_in = np.einsum("skd,sde,ske->sk", Vz, gi, Vz)
        e_out = np.einsum("skd,sde,ske->sk", Vz, go, Vz)
        jn = np.sqrt(np.maximum(a_in[:, None] * e_in + a_out[:, None] * e_out, 0.0))
        loc = a_in[:, None] * e_in / (a_in[:, None] * e_in + a_out[:, None] * e_out)  # share inside R
        rnd = _random_jnorm(a_in[:, None, None] * gi + a_out[:, None, None] * go)
        cap = MAX_ALPHA_RATIO * target / np.where(rnd > 0, rnd, np.inf)
        alpha = np.minimum(target / np.where(jn > 0, jn, np.nan), cap[:, None])
    alpha = np.where(finite & np.isfinite(alpha), alpha, np.nan)
    return {"alpha": alpha, "jnorm": jn, "energy_in": e_in, "energy_out": e_out, "locality": loc, "finite": finite}


@dataclass(frozen=True)
class PreviewPlan:
    samples: tuple[int, ...]
    directions: int
    strengths: tuple[float, ...]
    size: float
    target: float
    groups: tuple[Unit, ...]  # (region, label, method, param_hash, path, source)
    todo: tuple[Unit, ...]
    notes: tuple[str, ...] = ()
    population: str | None = None  # the population stage's input digest (signs and shared directions)

    def config(self) -> dict[str, Any]:
        return {"samples": list(self.samples), "directions": self.directions, "strengths": list(self.strengths),
                "size": self.size, "groups": [list(g) for g in self.groups], "population": self.population}


def _masks(store: Store, region: str, samples: list[int]) -> np.ndarray:
    """The region's mask R at each sample, [S, h, w] float64 (NaN read as 0)."""
    arr = store.group[f"regions/{region}/mask"]
    if arr.ndim == 2:
        m = np.broadcast_to(np.asarray(arr[...], dtype=np.float64), (len(samples), *arr.shape))
    else:
        m = read_rows(arr, samples).astype(np.float64)
    return np.nan_to_num(m)


def _areas(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ΣR and ΣB = Σ(1 − R) per sample, [S] each, of masks [S, h, w]."""
    a_in = masks.sum(axis=(1, 2))
    return a_in, masks.shape[1] * masks.shape[2] - a_in


def _grams(store: Store, region: str, samples: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The per-pixel Grams M_R, M_B of the region at each sample, [S, d, d] float64 each."""
    gi, go = (read_rows(store.group[f"regions/{region}/{side}"], samples).astype(np.float64)
              for side in ("gram_in", "gram_out"))
    return gi, go


def _full_gram(store: Store, region: str, samples: list[int]) -> np.ndarray:
    """JᵀJ = ΣR·M_R + ΣB·M_B per sample, [S, d, d] float64."""
    gi, go = _grams(store, region, samples)
    a_in, a_out = _areas(_masks(store, region, samples))
    return a_in[:, None, None] * gi + a_out[:, None, None] * go


def plan_previews(spec: JobSpec, store: Store) -> PreviewPlan:
    """Groups, samples and the matched target from the store (no generator)."""
    from lrgan_dist.core.methods import get_method

    p = spec.previews
    L = store.layout
    notes: list[str] = []
    done = store.status() == DONE
    groups: list[Unit] = []
    for m in spec.methods:
        method = get_method(m.method, **m.params)
        ph = method.param_hash()
        if getattr(method, "population_only", False):  # ganspace, sefa: one region-free direction set
            pop = store.find_result_group("population", "_latent", m.label, ph)
            if pop is None or f"{pop}/vectors" not in store.group:
                notes.append(f"population/_latent/{m.label}: not stored (run population first; sefa needs a generator "
                             "with modulation weights); no previews")
                continue
            label = pop.rsplit("/", 1)[1]
            groups.extend((r, label, m.method, ph, pop, "population") for r in L.regions)
            continue
        for r in L.regions:
            path = store.find_result_group("directions", r, m.label, ph)
            if path is None:
                notes.append(f"directions/{r}/{m.label}: not computed (run factorize first); no previews")
                continue
            done &= store.status(f"{path}/status") == DONE
            label = path.rsplit("/", 1)[1]
            groups.append((r, label, m.method, ph, path, "sample"))
            pop = store.find_result_group("population", r, m.label, ph)
            if pop is not None and f"{pop}/vectors" in store.group:
                groups.append((r, label, m.method, ph, pop, "population"))
                if f"{pop}/consensus/vectors" in store.group:
                    groups.append((r, label, m.method, ph, f"{pop}/consensus", "consensus"))
    cand = np.flatnonzero(done)
    if cand.size == 0 or not groups:
        return PreviewPlan((), p.directions, tuple(p.strengths), p.size, float("nan"), tuple(groups), (),
                           tuple(notes + ["no sample is done in every result group; no previews"]))
    pick = np.unique(np.round(np.linspace(0, cand.size - 1, min(p.samples, cand.size))).astype(np.int64))
    samples = [int(cand[i]) for i in pick]
    G = _full_gram(store, L.regions[0], samples)
    rnd = _random_jnorm(G)
    target = float(p.size * np.median(rnd))
    pop_attrs = dict(store.group["population"].attrs) if "population" in store.group else {}
    pop_inputs = str(pop_attrs["inputs"]) if "inputs" in pop_attrs else None
    plan0 = PreviewPlan(tuple(samples), min(p.directions, L.d), tuple(float(a) for a in p.strengths), float(p.size),
                        target, tuple(groups), (), tuple(notes), pop_inputs)
    h = json_sha256(plan0.config())
    old = dict(store.group["previews"].attrs) if "previews" in store.group else {}
    todo = []
    for g in groups:
        key = preview_path(g[0], g[1], g[5])
        fresh = old.get("hash") == h and key in store.group and store.group[key].attrs.get("complete")
        if not fresh:
            todo.append(g)
    return PreviewPlan(plan0.samples, plan0.directions, plan0.strengths, plan0.size, target, plan0.groups,
                       tuple(todo), plan0.notes, pop_inputs)


class PreviewWorker(GeneratorReplica):
    """One generator replica; renders and writes whole result groups of previews. Ray-free."""

    def __init__(self, spec: JobSpec, store_uri: str, plan: PreviewPlan, torch_threads: int | None = None,
                 hooks: StageHooks | None = None):
        super().__init__(spec, torch_threads, hooks)
        self.plan = plan
        self.store = Store.open(store_uri, mode="a")
        self.layout = self.store.layout

    def _render(self, X: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            y = self.generator.forward(X.to(self.device), x.expand_as(X).to(self.device))
        return y.detach().float().cpu()

    def _directions(self, unit: Unit, idx: np.ndarray, K: int) -> np.ndarray:
        """[S, K, d] float64 directions of the unit at samples idx (NaN rows: not defined)."""
        region, label, method, ph, path, source = unit
        st = self.store
        if source == "sample":
            return np.asarray(read_directions(st, path, idx, K), dtype=np.float64)  # signs aligned (issue 15)
        V = np.asarray(st.group[f"{path}/vectors"][:K], dtype=np.float64)  # [K, d], shared by every sample
        if source == "population":
            rank = int(np.asarray(st.group[f"{path}/rank"][...])) if f"{path}/rank" in st.group else V.shape[0]
            V[rank:] = np.nan
        else:  # consensus: eigenvalue above CONSENSUS_MIN, signs aligned to the population directions
            sp = np.asarray(st.group[f"{path}/spectrum"][:K], dtype=np.float64)
            V[~(sp > CONSENSUS_MIN)] = np.nan
            pop = path.rsplit("/", 1)[0]
            rank = int(np.asarray(st.group[f"{pop}/rank"][...]))
            if rank:  # with no population direction the consensus is itself the sign reference (as stored)
                V = apply_signs(V, align_signs(V, np.asarray(st.group[f"{pop}/vectors"][:rank], dtype=np.float64)))
        return np.broadcast_to(V, (len(idx), *V.shape)).copy()

    def run(self, unit: Unit) -> dict[str, Any]:
        from lrgan_dist.core.jacobian import pool_image, to_uint8_preview

        t0 = time.perf_counter()
        self.hooks.before_unit(NAME, unit)
        region, label, method, ph, path, source = unit
        st, L, pl = self.store, self.layout, self.plan
        samples = list(pl.samples)
        S, K, A = len(samples), pl.directions, len(pl.strengths)
        ph_, pw_ = L.preview_hw
        idx = np.asarray(samples, dtype=np.int64)
        V = self._directions(unit, idx, K)  # [S, K, d]
        K = V.shape[1]
        gi, go = _grams(st, region, samples)
        masks = _masks(st, region, samples)
        a_in, a_out = _areas(masks)
        lat = read_rows(st.group["latents"], idx).astype(np.float32)
        ms = matched_step(V, gi, go, a_in, a_out, pl.target)
        alpha, finite = ms["alpha"], ms["finite"]
        frames = np.zeros((S, K, A, ph_, pw_, 3), dtype=np.uint8)
        delta = np.zeros((S, K, ph_, pw_), dtype=np.uint8)
        dscale = np.full((S, K), np.nan, dtype=np.float32)
        dshare = np.full((S, K), np.nan, dtype=np.float32)
        strengths = np.asarray(pl.strengths, dtype=np.float64)
        big = int(np.argmax(np.abs(strengths)))  # the |ΔG| map is drawn at the largest |strength|
        lo, hi = (float(v) for v in self.generator.image_range)
        for s in range(S):
            ks = [k for k in range(K) if np.isfinite(alpha[s, k])]
            if not ks:
                continue
            x = torch.as_tensor(lat[s], dtype=torch.float32)
            steps = [(k, a) for k in ks for a in range(A)]
            X = torch.stack([x + float(strengths[a] * alpha[s, k]) * torch.as_tensor(V[s, k], dtype=torch.float32)
                             for k, a in steps])
            Y = self._render(torch.cat([x[None], X]), x)
            y0, Ye = Y[:1], Y[1:]
            u8 = to_uint8_preview(Ye, (lo, hi), max_size=max(L.preview_hw))
            for e, (k, a) in enumerate(steps):
                frames[s, k, a] = u8[e]
            m = torch.as_tensor(masks[s])
            for k in ks:
                e = steps.index((k, big))
                d = Ye[e:e + 1] - y0  # [1, C, H, W]
                mag = d.double().pow(2).sum(dim=1, keepdim=True).sqrt()
                mp = pool_image(mag, (ph_, pw_), channels="mean")[0, 0].numpy()
                top = float(mp.max())
                dscale[s, k] = top
                if top > 0:
                    delta[s, k] = np.clip(np.round(255.0 * mp / top), 0, 255).astype(np.uint8)
                g2 = pool_image(d.double(), L.grid, channels=self.spec.grid.channels).pow(2).sum(dim=1)[0]
                tot = float(g2.sum())
                if tot > 0:
                    dshare[s, k] = float((g2 * m).sum()) / tot
        dirs = np.where(finite, np.arange(K)[None, :], -1).astype(np.int32)
        base = preview_path(region, label, source)
        grp = st.group.require_group(base)
        # a group without arrays (the usual case: a new configuration recreates the previews root)
        # skips zarr's delete-before-create; a rerun of an incomplete group overwrites
        ow = any(True for _ in grp.array_keys())
        grp.attrs["complete"] = False
        st.create_array(f"{base}/samples", (S,), overwrite=ow)[...] = idx.astype(np.int32)
        st.create_array(f"{base}/directions", (S, K), overwrite=ow)[...] = dirs
        st.create_array(f"{base}/strengths", (A,), overwrite=ow)[...] = strengths.astype(np.float32)
        for name, val in (*((nm, ms[nm]) for nm in ("alpha", "jnorm", "energy_in", "energy_out", "locality")),
                          ("delta_share", dshare), ("delta_scale", dscale)):
            val = np.where(finite, val, np.nan).astype(np.float32)
            st.create_array(f"{base}/{name}", (S, K), overwrite=ow)[...] = val
        st.create_array(f"{base}/frames", frames.shape, overwrite=ow)[...] = frames
        st.create_array(f"{base}/delta", delta.shape, overwrite=ow)[...] = delta
        grp.attrs.update({"region": region, "label": label, "method": method, "param_hash": ph,
                          "directions_path": path, "source": source, "target": pl.target, "size": pl.size,
                          "image_range": [lo, hi], "max_alpha_ratio": MAX_ALPHA_RATIO,
                          "complete": True})  # last
        return {"unit": base.split("/", 1)[1], "renders": len(samples) * (1 + K * A),
                "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- stage interface


def plan(ctx: StageContext) -> PreviewPlan:
    return plan_previews(ctx.spec, ctx.store)


def run(ctx: StageContext) -> dict[str, Any]:
    """Render the pending result groups' previews; idempotent (complete groups of the same
    configuration are skipped)."""
    t0 = time.perf_counter()
    store = ctx.store
    pl = plan(ctx)
    rep: dict[str, Any] = {"groups": len(pl.groups), "units": len(pl.todo), "samples": list(pl.samples),
                           "target": pl.target, "notes": list(pl.notes)}
    if not pl.todo:
        rep["seconds"] = round(time.perf_counter() - t0, 3)
        return to_jsonable(rep)
    h = json_sha256(pl.config())
    if "previews" not in store.group or store.group["previews"].attrs.get("hash") != h:
        root = store.group.create_group("previews", overwrite=True)  # another configuration: render all again
    else:
        root = store.group["previews"]
    root.attrs.update({"hash": h, "config": pl.config(), "target": pl.target})
    # the driver creates every group the units write: units running at once would race to create
    # the one they share (previews/<r>/<label> holds .../population and .../consensus), and zarr's
    # require_group is open-else-create ("A group exists" for the loser, seen on S3)
    for region, label, *_, source in pl.todo:
        store.group.require_group(preview_path(region, label, source))
    out = run_actors(ctx, PreviewWorker, (ctx.spec, store.uri, pl, ctx.resources.threads, ctx.hooks),
                     list(pl.todo), NAME)
    rep["restarts"] = out["restarts"]
    store.consolidate()
    rep["seconds"] = round(time.perf_counter() - t0, 3)
    return to_jsonable(rep)
