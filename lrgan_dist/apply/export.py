"""Export directions in the reference LowRankGAN / ReSeFa ``.npy`` layout (``lrgan-dist export``).

The reference scripts (LowRankGAN's and ReSeFa's ``manipulate``-style editors) read one
float array ``[k, d]`` of unit latent directions per image and region, best first, and
edit ``x' = x + α·direction[j]`` in the space the directions were computed in. The export
writes, for one region and one method (result group) of a store::

    OUT/
      manifest.json                       store URI and fingerprint, lrgan-dist version, the
                                          resolved job spec, region, method (label, name,
                                          parameters, param_hash), latent space, d, and one
                                          entry per exported sample {sample, file, k}
      latents.npy                         f32 [N, d]  the analysed latent x of every sample
                                          (row i = sample i; NaN rows for samples not done)
      <region>/<label>/sample_<i:06d>.npy f32 [k_i, d] directions of sample i: the rank_i
                                          defined rows of directions/<region>/<label>/vectors
                                          (unit norm, best first, NaN padding dropped), signs
                                          aligned to the population directions (issue 15,
                                          lrgan_dist.store.aligned; manifest "signs")

Only samples whose Jacobians and directions are done and whose rank is ≥ 1 are written.
Every file is written under a temporary name and renamed, and ``manifest.json`` last, so
an interrupted export never looks complete. ``d`` and the space are those of the store's
latents (``latent.space``: for StyleGAN2 ``w``/``wplus`` these are w-space directions to
add to the slots the job analysed).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lrgan_dist.spec import SpecError
from lrgan_dist.store.aligned import read_directions, sign_path
from lrgan_dist.store.zarrstore import DONE, Store

__all__ = ["export_reference", "FORMATS"]

FORMATS = ("reference",)


def _save(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr)
    os.replace(tmp, path)


def export_reference(store: str | Store, region: str, method: str, out: str | os.PathLike,
                     samples: Sequence[int] | None = None, fmt: str = "reference") -> dict[str, Any]:
    """Write the reference ``[k, d]`` per-sample ``.npy`` layout (module docstring) to ``out``.

    ``method`` is a method label of the store (``label@hash8`` for an older parameter set).
    Returns the manifest (JSON-able). Bad input raises :class:`SpecError` naming the option.
    """
    if fmt not in FORMATS:
        raise SpecError("--format", f"received {fmt!r}; expected one of {list(FORMATS)}")
    st = store if isinstance(store, Store) else Store.open(str(store), mode="r")
    groups = {(r, lab): path for r, lab, path in st.direction_groups()}
    regions = sorted({r for r, _ in groups})
    if region not in regions:
        raise SpecError("--region", f"received {region!r}; expected a region with directions in the store: {regions}")
    labels = sorted(lab for r, lab in groups if r == region)
    if method not in labels:
        raise SpecError("--method", f"received {method!r}; expected a method label of region {region!r}: {labels}")
    g: Any = st.group[groups[(region, method)]]
    attrs = dict(g.attrs)
    n = st.layout.n
    status = st.status()
    dstatus = np.asarray(g["status"][:])
    ranks = np.asarray(g["rank"][:])
    want = np.arange(n) if samples is None else np.asarray(list(samples), dtype=np.int64)
    bad = want[(want < 0) | (want >= n)]
    if bad.size:
        raise SpecError("--samples", f"received indices {bad[:8].tolist()}; expected sample indices in [0, {n})")
    out_dir = Path(out).expanduser()
    sub = out_dir / region / method
    sub.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.json"
    if manifest_path.exists():
        manifest_path.unlink()  # the manifest is the completion marker: gone until the export is whole
    latents = np.asarray(st.read("latents"), dtype=np.float32)
    latents[status != DONE] = np.nan
    _save(out_dir / "latents.npy", latents)
    entries = []
    path = groups[(region, method)]
    ok = want[(status[want] == DONE) & (dstatus[want] == DONE) & (ranks[want] >= 1)]
    block = max(1, st.layout.chunk)
    for b0 in range(0, ok.size, block):
        rows = ok[b0:b0 + block]
        V = read_directions(st, path, rows)  # [rows, d, d], signs aligned
        for i, v in zip(rows.tolist(), V):
            entries.append(_export_one(sub, region, method, i, np.asarray(v, dtype=np.float32)[: int(ranks[i])]))
    entries = [e for e in entries if e is not None]
    spec = st.spec
    manifest = {
        "format": "reference",
        "layout": "one float32 [k, d] .npy of unit directions per sample (best first); latents.npy [N, d]",
        "signs": ("aligned: each direction has a non-negative inner product with its closest population (or, "
                  "without population directions, consensus) direction (population/<region>/<label>/sign)"
                  if sign_path(st, path) else "as computed (no population signs)"),
        "store": str(st.uri),
        "fingerprint": st.fingerprint,
        "lrgan_dist_version": _version(),
        "region": region,
        "method": {"label": method, "name": attrs.get("method", method), "params": attrs.get("params"),
                   "param_hash": attrs.get("param_hash")},
        "latent_space": (spec.get("latent") or {}).get("space") or (spec.get("generator", {}).get("params") or {}).get("space"),
        "d": int(st.layout.d),
        "samples": entries,
        "spec": spec,
    }
    tmp = manifest_path.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    os.replace(tmp, manifest_path)
    return {k: v for k, v in manifest.items() if k != "spec"} | {"out": str(out_dir), "exported": len(entries)}


def _export_one(sub: Path, region: str, method: str, i: int, v: np.ndarray) -> dict[str, Any] | None:
    """Save sample i's defined rows; its manifest entry, or None when none is defined."""
    v = v[np.isfinite(v).all(axis=1)]
    if not len(v):
        return None
    name = f"sample_{i:06d}.npy"
    _save(sub / name, v)
    return {"sample": int(i), "file": f"{region}/{method}/{name}", "k": int(v.shape[0])}


def _version() -> str:
    from lrgan_dist import __version__

    return __version__
