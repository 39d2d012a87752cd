"""``lrgan-dist inspect --verify``: consistency checks of a store; repair before a resume.

Checks: the stored spec re-parses and reproduces the stored fingerprint; every array
has the shape the layout implies; every chunk holding finished (done or failed) samples
can be read -- a chunk file cut short or overwritten fails to decode; every sample
marked done has finite latents and Grams (and kept Jacobians / part masks); every sample
marked failed has a reason; every per-sample result marked done has a finite first
direction or rank 0. :func:`verify_store` returns a list of problems (empty = OK).

:func:`repair_for_resume` (``submit`` runs it before the jacobians stage of an existing
store) turns the damage that a resume can recompute back into pending work, so that the
same ``submit`` finishes the store:

* a per-sample array of the jacobians stage (``latents``, ``images``, ``status``,
  ``errors``, ``jacobians``, ``regions/<r>/gram_in|gram_out``, part masks) missing or of
  the wrong shape → recreated empty, every sample pending;
* a chunk of such an array unreadable, or holding NaN/Inf for a sample marked done
  (a deleted chunk reads as the NaN fill value) → that chunk's samples pending;
* a result group ``directions/<r>/<label>`` with an array missing → removed (the
  factorize stage recreates it); a result chunk unreadable or NaN for a done sample,
  and every chunk recomputed above → its factorize status pending.

Damage a resume cannot recompute -- a static region mask (box, preset, mask file),
written once at creation -- raises :class:`~.store.StoreError` naming the array (exit 2;
``--fresh`` starts over).

Cost: reads every chunk of finished samples once, one chunk at a time (I/O ∝ store
size, memory one chunk); no generator work.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrgan_dist.store.zarrstore import DONE, FAILED, PENDING, Layout, Store, StoreError

__all__ = ["verify_store", "repair_for_resume", "check_same_generator"]

_RESULT_ARRAYS = ("vectors", "rank", "spectrum", "status")


@dataclass
class _Scan:
    problems: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # recomputable per-sample arrays missing / misshapen
    unfixable: list[str] = field(default_factory=list)
    units: dict[tuple[int, int], list[str]] = field(default_factory=dict)  # jacobians-stage units to recompute
    bad_groups: list[str] = field(default_factory=list)  # result groups with an array missing
    group_units: dict[str, set[tuple[int, int]]] = field(default_factory=dict)  # result chunks to refactorize

    def unit(self, a: int, b: int, msg: str) -> None:
        self.problems.append(msg)
        self.units.setdefault((a, b), []).append(msg)


def _read(arr: Any, a: int | None = None, b: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """(data, None) or (None, reason) when the chunk cannot be read or decoded."""
    try:
        return np.asarray(arr[a:b] if a is not None else arr[...]), None
    except Exception as exc:  # noqa: BLE001 - any decode/IO failure is a damaged chunk
        text = str(exc).splitlines()[0] if str(exc) else ""
        return None, f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unreadable(key: str, a: int, b: int, why: str) -> str:
    return f"{key}[{a}:{b}]: chunk unreadable ({why}); truncated or corrupt chunk file"


def _part_regions(store: Store) -> set[str]:
    regions = store.spec.get("regions", {}) if isinstance(store.spec, dict) else {}
    return {name for name, r in regions.items() if isinstance(r, dict) and r.get("part") is not None}


def _stage1_arrays(L: Layout, parts: set[str]) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], Any, Any, tuple]]:
    """Per-sample arrays the jacobians stage writes: key -> (shape, chunks, dtype, fill, dims), as store.py creates them."""
    cs, (h, w) = L.chunk, L.grid
    gd = "f8" if L.gram_dtype == "float64" else "f4"
    out: dict[str, Any] = {
        "latents": ((L.n, L.d), (cs, L.d), "f4", np.nan, ("sample", "latent")),
        "images": ((L.n, *L.preview_hw, 3), (cs, *L.preview_hw, 3), "u1", 0, ("sample", "row", "col", "rgb")),
        "status": ((L.n,), (cs,), "u1", PENDING, ("sample",)),
        "errors": ((L.n,), (cs,), str, None, ("sample",)),
    }
    if L.keep_jacobians:
        out["jacobians"] = ((L.n, L.channels, h, w, L.d), (cs, L.channels, h, w, L.d), "f2", np.nan,
                            ("sample", "channel", "row", "col", "latent"))
    for r in L.regions:
        for k in ("gram_in", "gram_out"):
            out[f"regions/{r}/{k}"] = ((L.n, L.d, L.d), (cs, L.d, L.d), gd, np.nan, ("sample", "latent_i", "latent_j"))
        if r in parts:
            out[f"regions/{r}/mask"] = ((L.n, h, w), (cs, h, w), "f4", np.nan, ("sample", "row", "col"))
    return out


def _scan(store: Store, check_spec: bool = True) -> _Scan:
    s = _Scan()
    L = store.layout
    g = store.group
    if check_spec:
        try:
            from lrgan_dist.spec import parse_spec

            spec = parse_spec(store.spec, base_dir=g.attrs.get("spec_base_dir", "."))
            if spec.data_fingerprint() != store.fingerprint:
                s.problems.append("fingerprint: the stored spec does not reproduce the stored fingerprint")
        except Exception as exc:  # noqa: BLE001
            s.problems.append(f"spec: stored spec does not parse ({exc})")
    parts = _part_regions(store)
    stage1 = _stage1_arrays(L, parts)
    h, w = L.grid
    expected = {k: v[0] for k, v in stage1.items()}
    for r in L.regions:
        expected.setdefault(f"regions/{r}/mask", (L.n, h, w) if r in L.per_sample_masks else (h, w))
    for key, shape in expected.items():
        if key not in g:
            msg = f"{key}: array missing"
        elif tuple(g[key].shape) != shape:
            msg = f"{key}: shape {list(g[key].shape)}, expected {list(shape)}"
        else:
            continue
        s.problems.append(msg)
        (s.missing if key in stage1 else s.unfixable).append(key if key in stage1 else msg)
    if "status" in s.missing:
        return s
    chunks = L.chunks()
    status = np.full(L.n, PENDING, dtype=np.uint8)
    known = np.ones(L.n, dtype=bool)  # False where the status chunk is unreadable
    for a, b in chunks:
        st, why = _read(g["status"], a, b)
        if st is None:
            s.unit(a, b, _unreadable("status", a, b, why))
            known[a:b] = False
        else:
            status[a:b] = st
    # Static masks: written once at creation, read by every unit.
    for r in L.regions:
        key = f"regions/{r}/mask"
        if r in parts or key not in g or tuple(g[key].shape) != expected[key]:
            continue
        for a, b in chunks if r in L.per_sample_masks else [(None, None)]:  # per-sample file masks: by chunk
            m, why = _read(g[key], a, b)
            if m is None or not np.isfinite(m).all():
                where = "" if a is None else f"[{a}:{b}]"
                msg = (f"{key}{where}: {'unreadable (' + why + ')' if m is None else 'holds NaN/Inf'}; "
                       "written at store creation")
                s.problems.append(msg)
                s.unfixable.append(msg)
    data_keys = [k for k in stage1 if k != "status" and k not in s.missing]
    finite_keys = {"latents", "jacobians", *(k for k in data_keys if k.startswith("regions/"))}
    for a, b in chunks:
        finished = status[a:b] != PENDING
        if not finished.any() or (a, b) in s.units:
            continue
        done = status[a:b] == DONE
        for key in data_keys:
            x, why = _read(g[key], a, b)
            if x is None:
                s.unit(a, b, _unreadable(key, a, b, why))
                continue
            if key in finite_keys and done.any():
                x = x[done]
                bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
                for i in np.flatnonzero(done)[bad]:
                    s.unit(a, b, f"{key}[{a + i}]: sample marked done but holds NaN/Inf (missing or corrupt chunk?)")
            if key == "errors":
                for i in np.flatnonzero(status[a:b] == FAILED):
                    if not str(x[i]):
                        s.problems.append(f"errors[{a + i}]: sample marked failed without a reason")
    for region, label, path in store.direction_groups():
        grp = g[path]
        missing = [k for k in _RESULT_ARRAYS if k not in grp]
        if missing:
            s.problems.extend(f"{path}/{k}: array missing" for k in missing)
            s.bad_groups.append(path)
            continue
        todo = s.group_units.setdefault(path, set())
        fst = np.full(L.n, PENDING, dtype=np.uint8)
        extra = [k for k, arr in grp.arrays() if k not in _RESULT_ARRAYS and arr.shape[:1] == (L.n,)]
        if "diagnostics" in grp:  # the method's per-sample diagnostics (RPCA iterations, gaps, ranks)
            extra += [f"diagnostics/{k}" for k, arr in grp["diagnostics"].arrays() if arr.shape[:1] == (L.n,)]
        for a, b in chunks:
            st, why = _read(grp["status"], a, b)
            if st is None:
                s.problems.append(_unreadable(f"{path}/status", a, b, why))
                todo.add((a, b))
                continue
            fst[a:b] = st
            done = st == DONE
            if not done.any():
                continue
            for key in ("rank", "spectrum", *extra):
                _, why = _read(grp[key], a, b)
                if why is not None:
                    s.problems.append(_unreadable(f"{path}/{key}", a, b, why))
                    todo.add((a, b))
            v, why = _read(grp["vectors"], a, b)
            rank, _ = _read(grp["rank"], a, b)
            if v is None:
                s.problems.append(_unreadable(f"{path}/vectors", a, b, why))
                todo.add((a, b))
                continue
            ok = np.isfinite(v[done][:, 0, :]).all(axis=1)
            if rank is not None:
                ok |= rank[done] == 0
            for i in np.flatnonzero(done)[~ok]:
                s.problems.append(f"{path}/vectors[{a + i}]: marked done but the first direction is NaN")
                todo.add((a, b))
        orphans = (fst == DONE) & (status != DONE) & known
        if orphans.any():
            s.problems.append(f"{path}: {int(orphans.sum())} samples have directions but no finished Jacobian")
            todo.update((a, b) for a, b in chunks if orphans[a:b].any())
    return s


def verify_store(store: Store) -> list[str]:
    """Every problem found (empty = OK); reads the store, changes nothing."""
    return _scan(store).problems


def refuse_if_damaged(store: Store, stages: str) -> None:
    """For runs without the jacobians stage (which is what repairs a store): raise
    :class:`StoreError` listing the damage instead of failing later on an unreadable chunk."""
    s = _scan(store, check_spec=False)
    found = s.unfixable + s.missing + [m for msgs in s.units.values() for m in msgs] + s.bad_groups
    if found:
        more = f" (+{len(found) - 3} more)" if len(found) > 3 else ""
        raise StoreError(f"{store.uri}: store is damaged: {'; '.join(found[:3])}{more}; --stages {stages} cannot "
                         "repair it; expected an intact store -- run with the jacobians stage (the default) to "
                         "recompute the damaged chunks (see 'lrgan-dist inspect --verify')")


def repair_for_resume(store: Store) -> list[str]:
    """Reset what a resume can recompute (see module docstring); returns what was reset.

    Raises :class:`StoreError` for damage a resume cannot recompute.
    """
    s = _scan(store, check_spec=False)
    if s.unfixable:
        more = f" (+{len(s.unfixable) - 3} more)" if len(s.unfixable) > 3 else ""
        raise StoreError(f"{store.uri}: damaged beyond what a resume recomputes: {'; '.join(s.unfixable[:3])}{more}; "
                         "expected an intact store -- pass --fresh to start over (see 'lrgan-dist inspect --verify')")
    L, g = store.layout, store.group
    done: list[str] = []
    units = set(s.units)
    if s.missing:
        specs = _stage1_arrays(L, _part_regions(store))
        for key in s.missing:
            shape, chunks, dtype, fill, dims = specs[key]
            kw: dict[str, Any] = {} if fill is None else {"fill_value": fill}
            g.create_array(key, shape=shape, chunks=chunks, dtype=dtype, dimension_names=dims, overwrite=True, **kw)
            done.append(f"{key}: array missing or misshapen; recreated, every sample recomputed")
        units = set(L.chunks())
    for a, b in sorted(units):
        g["status"][a:b] = np.full(b - a, PENDING, dtype=np.uint8)  # whole chunk: a corrupt one is overwritten
    for (a, b), msgs in sorted(s.units.items()):
        done.append(f"{msgs[0]}{f' (+{len(msgs) - 1} more)' if len(msgs) > 1 else ''}: samples {a}-{b - 1} recomputed")
    for path in s.bad_groups:
        del g[path]
        done.append(f"{path}: result arrays missing; group removed, refactorized")
    for _, _, path in store.direction_groups():  # recomputed Grams are refactorized too
        todo = s.group_units.get(path, set())
        for a, b in sorted(todo | units):
            g[f"{path}/status"][a:b] = np.full(b - a, PENDING, dtype=np.uint8)
        if todo:
            done.append(f"{path}: {len(todo)} damaged result chunk(s) refactorized")
    return done


def _digests(info: Any, prefix: str = "") -> dict[str, str]:
    """Every ``*sha256`` entry of a generator's info (checkpoint content digests)."""
    out: dict[str, str] = {}
    if isinstance(info, dict):
        for k, v in info.items():
            if isinstance(v, (dict, list)):
                out.update(_digests(v, f"{prefix}{k}."))
            elif str(k).endswith("sha256") and isinstance(v, str):
                out[f"{prefix}{k}"] = v
    elif isinstance(info, list):
        for i, v in enumerate(info):
            out.update(_digests(v, f"{prefix}{i}."))
    return out


def check_same_generator(store: Store, layout: Layout, generator_info: dict[str, Any]) -> None:
    """Refuse to resume a store with a generator other than the one that created it.

    The data fingerprint covers the spec, not the checkpoint file it names: a checkpoint
    replaced in place (other latent size, resolution or weights) is caught here, before
    any worker mixes its data into the store.
    """
    old = store.layout
    names = {"d": "latent dimension d", "image_shape": "generator output (C, H, W)", "grid": "analysis grid",
             "preview_hw": "preview size", "channels": "analysis channels"}
    diffs = [f"{names.get(k, k)}: store {getattr(old, k)!r}, generator now {getattr(layout, k)!r}"
             for k in old.__dataclass_fields__ if getattr(old, k) != getattr(layout, k)]
    a, b = _digests(store.group.attrs.get("generator") or {}), _digests(generator_info)
    diffs += [f"{k}: store {a[k][:12]}…, file now {b[k][:12]}…" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
    if diffs:
        raise StoreError(f"{store.uri}: the generator differs from the one that created this store ({'; '.join(diffs)}); "
                         "expected the same checkpoint -- was the file replaced? pass --fresh to start over or "
                         "choose another --store")
