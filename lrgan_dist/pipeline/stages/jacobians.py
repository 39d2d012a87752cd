"""Jacobians stage (map, Ray): latents → previews, region Grams (and optionally J).

Plan: the store's chunks along the sample axis are the work units; a unit is pending
while any of its samples has ``status == 0``. A pool of actors, each holding one
generator replica (one GPU each when the cluster has GPUs), takes units; a worker
computes every sample of its unit and writes the whole chunk of every array, then
``status`` last (one writer per chunk, docs/architecture.md).

Per sample: latent x_i from ``(seed, i)`` alone; image and J = ∂pool(G(x))/∂x by
forward mode (:mod:`lrgan_dist.core.jacobian`); the Grams M_R, M_B of every region
(README "Concepts"). A sample whose image, Jacobian or Grams hold NaN/Inf is marked failed
(status 2) with the reason in ``errors``; its arrays keep their NaN fill values.

Landmark regions (``{landmarks: SET}``, docs/spec.md): before the Jacobian, each sample
is rendered once (no grad) and MediaPipe Face Mesh runs on its own uint8 image (the
detector is created once per worker); the set's hull is rasterised on the analysis grid
(:func:`lrgan_dist.landmarks.landmark_masks`) and stored per sample in
``regions/<r>/mask`` with ``regions/<r>/found`` and ``regions/<r>/reason``. A sample
without a face keeps an empty mask and NaN Grams for that region (the engine sees a
placeholder mask so the other regions' Grams are computed) and stays done: factorize,
population and transfer leave it out of that region only.

Stage interface (:mod:`lrgan_dist.pipeline.scheduler`): ``plan(ctx)`` → pending chunks,
``run(ctx)`` → summary. Finiteness is decided once, by the engine (its ``finite`` flag
covers image, J and Grams); the worker only adds the float16 overflow check of a kept J.

Cost model: per unit of n samples, n·d JVPs through G (the Jacobian engine's cost
model) plus 2R·n·(c·h·w)·d² flops for the Grams, plus one write per array chunk; the
driver holds the status vector [N] only. Units run on ``min(actors, units)`` actors,
breadth first (every actor gets a unit before any gets a second).
"""
from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from lrgan_dist.apply.build import analysis_grid, finite_rows, preview_hw
from lrgan_dist.apply.latents import check_job_latents, job_latents
from lrgan_dist.core.jacobian import JacobianConfig, JacobianEngine, to_uint8_preview
from lrgan_dist.pipeline.replica import GeneratorReplica
from lrgan_dist.pipeline.runtime import StageContext, StageHooks, run_actors
from lrgan_dist.regions import RegionSpec, part_masks, region_mask
from lrgan_dist.spec import JobSpec, SpecError
from lrgan_dist.store.layout import matfree_names
from lrgan_dist.store.zarrstore import DONE, FAILED, Layout, Store

NAME = "jacobians"

__all__ = ["JacobianWorker", "plan_layout", "static_region_masks", "plan", "run"]


def static_region_masks(spec: JobSpec, grid: tuple[int, int], image_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """Masks known before any sample is computed: boxes, presets, files ([h,w] or [N,h,w])."""
    out = {}
    for r in spec.regions:
        if r.part is not None or r.landmarks is not None:
            continue
        out[r.name] = region_mask(spec.resolve_region(r), grid, image_hw, n_samples=spec.samples.count)
    return out


def plan_layout(spec: JobSpec, generator: Any) -> tuple[Layout, dict[str, np.ndarray]]:
    """Array geometry for a new store and the masks written at creation."""
    check_job_latents(spec, generator)  # the user's own latents fit the generator (samples.latents/seeds)
    image_shape = cast(tuple[int, int, int], tuple(int(v) for v in generator.image_shape))  # protocol: (C, H, W)
    grid = analysis_grid(spec, image_shape)
    masks = static_region_masks(spec, grid, image_shape[1:])
    per_sample = []
    for r in spec.regions:
        if r.part is not None:
            parts = getattr(generator, "PARTS", None)
            if not hasattr(generator, "part_masks"):
                raise SpecError(f"regions.{r.name}.part", f"generator {spec.generator.kind!r} has no ground-truth part masks; "
                                "expected a box, mask or preset region")
            if parts is not None and r.part not in parts:
                raise SpecError(f"regions.{r.name}.part", f"received {r.part!r}; expected one of {list(parts)}")
            per_sample.append(r.name)
        elif r.landmarks is not None:
            per_sample.append(r.name)
        elif masks[r.name].ndim == 3:
            per_sample.append(r.name)
    c = image_shape[0] if spec.grid.channels == "rgb" else 1
    layout = Layout(
        n=spec.samples.count,
        d=int(generator.latent_dim),
        chunk=spec.store.chunk_samples,
        image_shape=image_shape,  # type: ignore[arg-type]
        preview_hw=preview_hw(image_shape),  # type: ignore[arg-type]
        grid=grid,
        channels=c,
        regions=tuple(r.name for r in spec.regions),
        per_sample_masks=tuple(per_sample),
        gram_dtype=spec.compute.gram_dtype,
        keep_jacobians=spec.compute.keep_jacobians,
        landmark_regions=tuple(r.name for r in spec.regions if r.landmarks is not None),
    )
    return layout, masks


@dataclass
class UnitResult:
    start: int
    stop: int
    done: int
    failed: int
    seconds: float
    actor: str
    no_face: dict[str, int] | None = None  # landmark region -> samples of the unit without a face
    landmark_seconds: float = 0.0  # this worker's cumulative render + detection time


class JacobianWorker(GeneratorReplica):
    """One generator replica; computes and writes whole work units. Ray-free."""

    def __init__(self, spec: JobSpec, store_uri: str, torch_threads: int | None = None,
                 hooks: StageHooks | None = None):
        super().__init__(spec, torch_threads, hooks)
        self.store = Store.open(store_uri, mode="a")
        L = self.store.layout
        self.layout = L
        self.engine = JacobianEngine(
            self.generator,
            JacobianConfig(grid=L.grid, channels=spec.grid.channels, chunk=spec.compute.jvp_chunk,
                           gram_dtype=spec.compute.gram_dtype, keep_jacobian=L.keep_jacobians),
            device=self.device,
        )
        self.static = {
            name: torch.as_tensor(self.store.region_mask(name))
            for name in L.regions
            if name not in L.per_sample_masks
        }
        self.parts = {r.name: r.part for r in spec.regions if r.part is not None}
        self.landmarks: dict[str, RegionSpec] = {r.name: r for r in spec.regions if r.landmarks is not None}
        self.detector = None
        self.landmark_seconds = 0.0
        if self.landmarks:
            from lrgan_dist.landmarks import FaceMeshDetector

            self.detector = FaceMeshDetector()  # once per actor: one Face Mesh graph for every unit
        self.batch = spec.compute.batch_size or L.chunk
        import os
        import socket

        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def _landmark_masks(self, x: torch.Tensor) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
        """{region: (mask [n, h, w], found [n] bool, reasons [n])} from each sample's own image."""
        if not self.landmarks:
            return {}
        from lrgan_dist.landmarks import landmark_masks

        t0 = time.perf_counter()
        with torch.no_grad():
            img = self.generator.forward(x.to(self.device), x.to(self.device)).float().cpu()
        H = int(img.shape[-2])
        u8 = to_uint8_preview(img, tuple(self.generator.image_range), max_size=max(H, int(img.shape[-1])))
        out = {}
        by_dilate: dict[float, list[RegionSpec]] = {}
        for r in self.landmarks.values():
            by_dilate.setdefault(float(r.dilate or 0.0), []).append(r)
        for dil, regs in by_dilate.items():  # one detection per image; hulls per (set, dilate)
            masks, found, reasons = landmark_masks(u8, sorted({str(r.landmarks) for r in regs}), self.layout.grid,
                                                   dil, detector=self.detector)
            for r in regs:
                out[r.name] = (masks[str(r.landmarks)], found, reasons)
        self.landmark_seconds += time.perf_counter() - t0
        return out

    def _unit_masks(self, x: torch.Tensor, start: int, stop: int,
                    lm: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] | None = None) -> torch.Tensor:
        """[R, n, h, w] if any mask is per sample, else [R, h, w]."""
        L = self.layout
        if not L.per_sample_masks:
            return torch.stack([self.static[r] for r in L.regions])
        n = stop - start
        out = []
        for r in L.regions:
            if lm and r in lm:
                m = torch.as_tensor(lm[r][0].copy())
                # placeholder (top half) where no face was found: the engine needs a valid mask to
                # compute the other regions; this region's Grams are replaced by NaN afterwards
                for i in np.flatnonzero(~lm[r][1]):
                    m[i] = 0
                    m[i, : L.grid[0] // 2] = 1
            elif r in self.parts:
                cfg = self.spec.resolve_region(self.spec.region(r))
                with torch.no_grad():
                    m = torch.as_tensor(part_masks(cfg, self.generator, x.to(self.device), L.grid))
            elif r in L.per_sample_masks:
                m = torch.as_tensor(self.store.region_mask(r, start, stop))
            else:
                m = self.static[r].expand(n, *L.grid)
            out.append(m)
        return torch.stack(out)

    def run(self, unit: tuple[int, int]) -> UnitResult:
        t0 = time.perf_counter()
        self.hooks.before_unit(NAME, unit)
        start, stop = unit
        L, spec = self.layout, self.spec
        idx = list(range(start, stop))
        x = job_latents(spec, self.generator, idx)  # [n, d]: drawn, or the spec's file / seeds
        n = len(idx)
        lm = self._landmark_masks(x) if self.landmarks else {}
        masks = self._unit_masks(x, start, stop, lm)  # [R, (n,) h, w]
        if spec.compute.jacobian == "matfree":  # issue 17: eigenpairs instead of Grams
            return self._run_matfree(unit, x, masks, lm, t0)
        gd = np.float64 if L.gram_dtype == "float64" else np.float32
        R, d, (h, w) = len(L.regions), L.d, L.grid
        grams = {side: np.full((n, R, d, d), np.nan, dtype=gd) for side in ("gram_in", "gram_out")}
        previews = np.zeros((n, *L.preview_hw, 3), dtype=np.uint8)
        jac = np.full((n, L.channels, h, w, d), np.nan, dtype=np.float16) if L.keep_jacobians else None
        status = np.full(n, FAILED, dtype=np.uint8)
        errors = [""] * n

        def compute(xb: torch.Tensor, mb: torch.Tensor, b0: int, b1: int) -> dict[str, Any]:
            return self.engine.compute(xb, mb)

        for b0, b1, out in self._batches(x, masks, errors, compute):
            gi = out["gram_in"].detach().cpu().numpy()
            go = out["gram_out"].detach().cpu().numpy()
            img = out["images"].detach().float().cpu()
            ok = out["finite"].cpu().numpy().astype(bool)  # the engine's one finiteness check
            J = out.get("jacobian")
            if jac is not None and J is not None:
                Jn = J.detach().float().cpu().numpy()
                j16 = Jn.astype(np.float16)
                ok &= finite_rows(j16)  # float16 overflow counts as a numerical failure
            previews[b0:b1] = to_uint8_preview(img, tuple(self.generator.image_range), max_size=max(L.preview_hw))
            for k in range(b1 - b0):
                i = b0 + k
                if ok[k]:
                    grams["gram_in"][i], grams["gram_out"][i] = gi[k], go[k]
                    if jac is not None:
                        jac[i] = j16[k]
                    status[i] = DONE
                else:
                    errors[i] = "non-finite values (NaN/Inf) in the image, Jacobian or Grams"
        extra = {"jacobians": jac} if jac is not None else {}
        return self._write(unit, x, previews, grams, masks, lm, status, errors, t0, extra)

    def _batches(self, x: torch.Tensor, masks: torch.Tensor, errors: list[str],
                 compute: Callable[[torch.Tensor, torch.Tensor, int, int], Any]) -> Iterator[tuple[int, int, Any]]:
        """``(b0, b1, compute(...))`` for every batch of the unit (``compute.batch_size``
        samples); a batch that raises records its error on its samples and is skipped."""
        n = x.shape[0]
        for b0 in range(0, n, self.batch):
            b1 = min(n, b0 + self.batch)
            mb = masks[:, b0:b1] if masks.ndim == 4 else masks
            try:
                out = compute(x[b0:b1].to(self.device), mb.to(self.device), b0, b1)
            except Exception as exc:  # noqa: BLE001 - a sample failure must not kill the unit
                for i in range(b0, b1):
                    errors[i] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
                continue
            yield b0, b1, out

    def _write(self, unit: tuple[int, int], x: torch.Tensor, previews: np.ndarray, per_region: dict[str, np.ndarray],
               masks: torch.Tensor, lm: dict[str, tuple[np.ndarray, np.ndarray, list[str]]], status: np.ndarray,
               errors: list[str], t0: float, extra: dict[str, np.ndarray] | None = None) -> UnitResult:
        """Write one unit: latents, previews, every ``regions/<r>/<key>`` of ``per_region``
        ([n, R, ...] arrays), per-sample masks, landmark flags; a landmark region without a
        face gets NaN results for that region only (the sample stays done)."""
        start, stop = unit
        data: dict[str, np.ndarray] = {"latents": x.numpy().astype(np.float32), "images": previews}
        for r_i, r in enumerate(self.layout.regions):
            if r in lm:
                m_r, found, reasons = lm[r]
                for arr in per_region.values():
                    arr[~found, r_i] = np.nan
                data[f"regions/{r}/mask"] = m_r.astype(np.float32)
                data[f"regions/{r}/found"] = found.astype(np.uint8)
                data[f"regions/{r}/reason"] = np.asarray(reasons, dtype=object).astype(str)
            if r in self.parts:
                data[f"regions/{r}/mask"] = masks[r_i].numpy().astype(np.float32)
            for key, arr in per_region.items():
                data[f"regions/{r}/{key}"] = arr[:, r_i]
        data.update(extra or {})
        self.store.write_unit(start, stop, data, status, errors)
        no_face = {r: int((~v[1]).sum()) for r, v in lm.items()}
        return UnitResult(start, stop, int((status == DONE).sum()), int((status == FAILED).sum()),
                          time.perf_counter() - t0, self.name, no_face, self.landmark_seconds)

    def _run_matfree(self, unit: tuple[int, int], x: torch.Tensor, masks: torch.Tensor,
                     lm: dict[str, tuple[np.ndarray, np.ndarray, list[str]]], t0: float) -> UnitResult:
        """compute.jacobian: matfree -- per region the top-k eigenpairs of M_R and M_B, their
        certificates and the union projections (:func:`lrgan_dist.core.matfree.region_subspaces`);
        no J, no Grams. Arrays: ``regions/<r>/{basis,eig,residual,union}_{in,out}``."""
        from lrgan_dist.core.matfree import region_subspaces

        start, stop = unit
        L, spec = self.layout, self.spec
        cfg = matfree_config(spec, L.d)
        n, R, d, k = stop - start, len(L.regions), L.d, cfg.k
        shapes = {"basis": (k, d), "eig": (k,), "residual": (k,), "union": (2 * k, 2 * k)}
        arrays = {name: np.full((n, R, *shapes[name.rsplit("_", 1)[0]]), np.nan, dtype=np.float32)
                  for name in matfree_names(cfg.union)}
        previews = np.zeros((n, *L.preview_hw, 3), dtype=np.uint8)
        status = np.full(n, FAILED, dtype=np.uint8)
        errors = [""] * n

        def compute(xb: torch.Tensor, mb: torch.Tensor, b0: int, b1: int) -> Any:
            return region_subspaces(self.generator, xb, mb, L.grid, spec.grid.channels, cfg,
                                    sample_ids=range(start + b0, start + b1))

        for b0, b1, res in self._batches(x, masks, errors, compute):
            previews[b0:b1] = to_uint8_preview(res.images, tuple(self.generator.image_range),
                                               max_size=max(L.preview_hw))
            for key in arrays:
                val = getattr(res, key)
                if val is not None:
                    arrays[key][b0:b1] = val.numpy()
            ok = res.finite.numpy().astype(bool)
            for j in range(b1 - b0):
                status[b0 + j] = DONE if ok[j] else FAILED
                if not ok[j]:
                    errors[b0 + j] = "non-finite values (NaN/Inf) in the image or eigenpairs (empty region or rest?)"
        return self._write(unit, x, previews, arrays, masks, lm, status, errors, t0)


def matfree_config(spec: JobSpec, d: int) -> Any:
    """The spec's :class:`lrgan_dist.core.matfree.MatFreeConfig` for latent size d (k ≤ d, 2k ≤ d for
    the union of LowRankGAN; the union is computed only when a method needs it)."""
    from lrgan_dist.core.matfree import MatFreeConfig

    c = spec.compute
    k = max(1, min(c.k, d))
    union = any(m.method == "lowrankgan" for m in spec.methods)
    return MatFreeConfig(k=k, oversample=max(0, min(c.oversample, d - k)), max_blocks=c.matfree_blocks,
                         tol=c.matfree_tol, chunk=c.jvp_chunk, union=union, seed=spec.samples.seed)


def ensure_matfree_arrays(store: Store, spec: JobSpec) -> None:
    """Create the matrix-free arrays (store/layout.py rows ``matfree_*``) in the driver, once."""
    if spec.compute.jacobian != "matfree":
        return
    cfg = matfree_config(spec, store.layout.d)
    for r in store.layout.regions:
        for name in matfree_names(cfg.union):
            path = f"regions/{r}/{name}"
            if path not in store.group:
                if name.startswith("union"):
                    store.create_array(path, u=2 * cfg.k)
                else:
                    store.create_array(path, k=cfg.k)


# ----------------------------------------------------------------------------- stage interface


def plan(ctx: StageContext) -> list[tuple[int, int]]:
    """Chunks with a pending sample (or a failed one with ``retry_failed``)."""
    return ctx.store.pending_units(retry_failed=ctx.retry_failed)


def run(ctx: StageContext) -> dict[str, Any]:
    units = plan(ctx)
    if not units:
        return {"units": 0, "computed": 0, "restarts": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    computed = 0
    no_face: dict[str, int] = {}
    lm_seconds: dict[str, float] = {}

    def on_result(unit: tuple[int, int], res: UnitResult) -> None:
        nonlocal computed
        computed += res.stop - res.start
        for r, k in (res.no_face or {}).items():
            no_face[r] = no_face.get(r, 0) + k
        lm_seconds[res.actor] = res.landmark_seconds

    ensure_matfree_arrays(ctx.store, ctx.spec)
    out = run_actors(ctx, JacobianWorker, (ctx.spec, ctx.store.uri, ctx.resources.threads, ctx.hooks), units,
                     NAME, weight=lambda u: u[1] - u[0], on_result=on_result)
    summary = {"units": len(units), "computed": computed, "actors": out["actors"], "restarts": out["restarts"],
               "seconds": time.perf_counter() - t0}
    if ctx.store.layout.landmark_regions:
        summary["no_face"] = no_face
        summary["landmark_seconds"] = round(sum(lm_seconds.values()), 3)  # summed over workers
    return summary
