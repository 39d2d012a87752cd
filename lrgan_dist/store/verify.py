"""``lrgan-dist inspect --verify``: consistency checks of a store; repair before a resume.

Two scans, one list of problems (:func:`verify_store` never raises; empty = OK):

* **cheap** (``full=False``; what ``submit`` runs before every run): every array's
  ``zarr.json`` parsed as text and compared with the layout table
  (:mod:`lrgan_dist.store.layout`: shape, chunks, dtype, fill value; on stores of
  format 2 also dimension names and the crc32c codec) -- corrupt metadata is a
  problem, never a crash; the status arrays read whole and checked for values outside
  0/1/2 (read as pending everywhere, so such samples are recomputed); one listing of
  the store for chunk presence and sizes: a chunk of an array whose done samples are
  never all fill (latents, Grams, Jacobians, per-sample masks, ranks) must exist and be
  non-empty; static masks (tiny) and the reasons of failed samples are read.
* **full** (``full=True``; ``inspect --verify``, ``submit --verify``): the cheap scan plus
  every chunk of every array decoded, in a thread pool: a cut or overwritten chunk fails
  to decode (and on format-2 stores a flipped byte fails its crc32c), every sample
  marked done must hold finite latents and Grams (and kept Jacobians / part masks) and
  a finite first direction or rank 0.

The stored spec must re-parse and reproduce the stored fingerprint (both scans).

:func:`repair_for_resume` (``submit`` runs it before the jacobians stage of an existing
store, cheap unless asked) turns the damage that a resume can recompute back into
pending work, so that the same ``submit`` finishes the store:

* a per-sample array of the jacobians stage (``latents``, ``images``, ``status``,
  ``errors``, ``jacobians``, ``regions/<r>/gram_in|gram_out``, part masks) missing, of
  the wrong shape or with metadata that disagrees with the table → recreated empty,
  every sample pending;
* a chunk of such an array missing or unreadable, a status value outside 0/1/2, or
  NaN/Inf for a sample marked done → that chunk's samples pending;
* a result group ``directions/<r>/<label>`` with an array missing or bad metadata →
  removed (the factorize stage recreates it); a result chunk missing, unreadable, of
  invalid status or NaN for a done sample, and every chunk recomputed above → its
  factorize status pending.

Damage a resume cannot recompute -- a static region mask (box, preset, mask file),
written once at creation -- raises :class:`~.zarrstore.StoreError` naming the array
(exit 2; ``--fresh`` starts over).

Cost: cheap -- one listing, the zarr.json of every array, the status arrays (N bytes
each) and the static masks; no data chunk is decoded. Full -- every chunk read once
(I/O ∝ store size), ``threads`` chunks in flight, memory ∝ ``threads`` chunks; no
generator work.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, cast

import numpy as np

from lrgan_dist.store.layout import (
    DONE,
    FAILED,
    PENDING,
    STORE_FORMAT,
    V3_DTYPE,
    Layout,
    fill_equal,
    geometry,
    matfree_names,
    spec_for,
    valid_status,
)
from lrgan_dist.store.zarrstore import Store, StoreError

__all__ = ["verify_store", "repair_for_resume", "refuse_if_damaged", "check_same_generator"]

_RESULT_ARRAYS = ("vectors", "rank", "spectrum", "status")
_CODES = "0 (pending), 1 (done), 2 (failed)"


@dataclass
class _Scan:
    problems: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # recomputable per-sample arrays missing / misshapen
    unfixable: list[str] = field(default_factory=list)
    units: dict[tuple[int, int], list[str]] = field(default_factory=dict)  # jacobians-stage units to recompute
    bad_groups: list[str] = field(default_factory=list)  # result groups with an array missing
    group_units: dict[str, set[tuple[int, int]]] = field(default_factory=dict)  # result chunks to refactorize
    bad_meta: set[str] = field(default_factory=set)  # arrays whose metadata cannot be trusted: never opened

    def unit(self, a: int, b: int, msg: str) -> None:
        self.problems.append(msg)
        self.units.setdefault((a, b), []).append(msg)


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read(arr: Any, a: int | None = None, b: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """(data, None) or (None, reason) when the chunk cannot be read or decoded."""
    try:
        return np.asarray(arr[a:b] if a is not None else arr[...]), None
    except Exception as exc:  # noqa: BLE001 - any decode/IO failure (incl. a crc32c mismatch) is a damaged chunk
        return None, _why(exc)


def _unreadable(key: str, a: int, b: int, why: str) -> str:
    return f"{key}[{a}:{b}]: chunk unreadable ({why}); truncated or corrupt chunk file"


def _part_regions(store: Store) -> set[str]:
    regions = store.spec.get("regions", {}) if isinstance(store.spec, dict) else {}
    # ground-truth parts and landmark regions: per-sample masks written by the jacobians stage
    return {name for name, r in regions.items()
            if isinstance(r, dict) and (r.get("part") is not None or r.get("landmarks") is not None)}


def _matfree_keys(store: Store) -> tuple[str, ...] | None:
    """``compute.jacobian: matfree`` stores (issue 17) hold eigenpairs instead of Grams: the
    per-region array names the jacobians stage writes there (``union_*`` only when created);
    None for a dense store. The Gram arrays of a matrix-free store stay empty by design."""
    compute = store.spec.get("compute", {}) if isinstance(store.spec, dict) else {}
    if not isinstance(compute, dict) or compute.get("jacobian") != "matfree":
        return None
    names = matfree_names(union=True)
    r0 = store.layout.regions[0] if store.layout.regions else None
    return tuple(n for n in names if not n.startswith("union") or (r0 is not None and f"regions/{r0}/{n}" in store.group))


#: per-sample arrays of a landmark region beside its mask: face found (u1), reason (text)
_LANDMARK_FLAGS = ("found", "reason")


def _stage1_keys(L: Layout, parts: set[str], matfree: tuple[str, ...] | None = None) -> list[str]:
    """Per-sample arrays the jacobians stage writes (and a resume can recreate)."""
    keys = ["latents", "images", "status", "errors", *(["jacobians"] if L.keep_jacobians else [])]
    for r in L.regions:
        keys += [f"regions/{r}/{k}" for k in (matfree or ("gram_in", "gram_out"))]
        keys += [f"regions/{r}/mask"] if r in parts else []
        if r in L.landmark_regions:
            keys += [f"regions/{r}/{flag}" for flag in _LANDMARK_FLAGS]
    return keys


def _chunk_index(rest: str) -> tuple[int, ...] | None:
    parts = rest.split("/")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None


def _index_listing(listing: dict[str, int]) -> tuple[set[str], dict[str, dict[tuple[int, ...], int]]]:
    """(paths holding a zarr.json, array path → {chunk index: bytes}) from one store listing."""
    metas: set[str] = set()
    chunks: dict[str, dict[tuple[int, ...], int]] = {}
    for key, size in listing.items():
        if key == "zarr.json" or key.endswith("/zarr.json"):
            metas.add(key[: -len("zarr.json")].rstrip("/"))
            continue
        head, sep, rest = key.partition("/c/") if not key.startswith("c/") else ("", "c/", key[2:])
        while sep:
            idx = _chunk_index(rest)
            if idx is not None:
                chunks.setdefault(head, {})[idx] = size
                break
            h2, sep, rest = rest.partition("/c/")
            head = f"{head}/c/{h2}"
    return metas, chunks


def _check_meta(store: Store, path: str, L: Layout, s: _Scan) -> bool | None:
    """Compare ``<path>/zarr.json`` with the layout table; False (and problems) when it
    disagrees, None for a group."""
    name = f"{path}/zarr.json"
    try:
        raw = store.read_key(name)
        doc = json.loads(raw or b"")
        if isinstance(doc, dict) and doc.get("node_type") == "group" and isinstance(doc.get("attributes", {}), dict):
            return None
        if not isinstance(doc, dict) or doc.get("node_type") != "array":
            raise ValueError(f"node_type {doc.get('node_type') if isinstance(doc, dict) else None!r}, "
                             "expected 'array' or 'group'")
        shape = tuple(int(x) for x in doc["shape"])
        chunks = tuple(int(x) for x in doc["chunk_grid"]["configuration"]["chunk_shape"])
        dtype = doc["data_type"]
    except Exception as exc:  # noqa: BLE001 - corrupt metadata is a finding, never a crash
        s.problems.append(f"{name}: array metadata unreadable ({_why(exc)}); expected zarr v3 array metadata")
        s.bad_meta.add(path)
        return False
    found = spec_for(path, L)
    if found is None:
        return True  # not an array of ours: nothing to compare with
    spec = found[0]
    try:
        geo = geometry(path, L, shape, dtype=dtype if spec.dtype == "given" else None,
                       tail=shape[1:] if "*tail" in spec.shape else ())
    except ValueError as exc:
        s.problems.append(str(exc))
        s.bad_meta.add(path)
        return False
    want_dtype = "string" if geo.dtype is str else V3_DTYPE.get(np.dtype(geo.dtype).str[1:], str(geo.dtype))
    bad = []
    if chunks != geo.chunks:
        bad.append(f"chunks {list(chunks)}, expected {list(geo.chunks)}")
    if dtype != want_dtype:
        bad.append(f"data_type {dtype!r}, expected {want_dtype!r}")
    if not fill_equal(doc.get("fill_value"), geo.fill):
        bad.append(f"fill_value {doc.get('fill_value')!r}, expected {geo.fill!r}")
    if store.format >= STORE_FORMAT:
        dims = tuple(doc.get("dimension_names") or ())
        if dims != tuple(geo.dims or ()):
            bad.append(f"dimension_names {list(dims)}, expected {list(geo.dims or ())}")
        codecs = [c.get("name") if isinstance(c, dict) else c for c in doc.get("codecs", [])]
        if "crc32c" not in codecs:
            bad.append(f"codecs {codecs}, expected a crc32c checksum")
    if bad:
        s.problems.append(f"{name}: {'; '.join(bad)} (layout table row {spec.kind!r})")
        s.bad_meta.add(path)
        return False
    return True


class _Pool:
    """Chunk reads in a thread pool (full scan); results applied in submission order."""

    def __init__(self, threads: int) -> None:
        self.ex = ThreadPoolExecutor(max_workers=max(1, threads))
        self.jobs: list[tuple[Any, Callable[[Any], None]]] = []

    def read(self, arr: Any, a: int | None, b: int | None, then: Callable[[tuple[np.ndarray | None, str | None]], None]) -> None:
        self.jobs.append((self.ex.submit(_read, arr, a, b), then))

    def drain(self) -> None:
        jobs, self.jobs = self.jobs, []
        for fut, then in jobs:
            then(fut.result())

    def close(self) -> None:
        self.ex.shutdown(wait=True)


def _read_status(g: Any, key: str, L: Layout, n: int, chunks: list[tuple[int, int]], s: _Scan,
                 on_bad: Callable[[int, int, str], None]) -> tuple[np.ndarray, np.ndarray]:
    """(raw status [n], known [n]) -- whole-array read, per chunk only when that fails."""
    status = np.full(n, PENDING, dtype=np.uint8)
    known = np.ones(n, dtype=bool)
    st, _ = _read(g[key])
    if st is not None:
        return st.astype(np.uint8), known
    for a, b in chunks:
        x, why = _read(g[key], a, b)
        if x is None:
            on_bad(a, b, _unreadable(key, a, b, why or ""))
            known[a:b] = False
        else:
            status[a:b] = x
    return status, known


def _invalid(key: str, raw: np.ndarray) -> tuple[str, np.ndarray] | None:
    bad = ~valid_status(raw)
    if not bad.any():
        return None
    idx = np.flatnonzero(bad)
    ex = ", ".join(f"[{i}] = {int(raw[i])}" for i in idx[:3])
    return (f"{key}: {idx.size} value(s) outside the status codes ({ex}{' ...' if idx.size > 3 else ''}); "
            f"expected {_CODES}; read as pending and recomputed"), bad


def _scan(store: Store, check_spec: bool = True, full: bool = True, threads: int | None = None) -> _Scan:
    s = _Scan()
    try:
        _scan_into(store, s, check_spec, full, threads or min(8, 2 * (os.cpu_count() or 1)))
    except Exception as exc:  # noqa: BLE001 - verify lists problems, it never crashes
        s.problems.append(f"{store.uri}: scan stopped ({_why(exc)}); expected a readable store -- the problems "
                          "above are incomplete")
        s.unfixable.append(s.problems[-1])
    return s


def _scan_into(store: Store, s: _Scan, check_spec: bool, full: bool, threads: int) -> None:
    L = store.layout
    g = store.group
    if check_spec:
        try:
            from lrgan_dist.spec import parse_spec

            spec = parse_spec(store.spec, base_dir=cast(str, g.attrs.get("spec_base_dir", ".")))  # a JSON str attr
            if spec.data_fingerprint() != store.fingerprint:
                s.problems.append("fingerprint: the stored spec does not reproduce the stored fingerprint")
        except Exception as exc:  # noqa: BLE001
            s.problems.append(f"spec: stored spec does not parse ({exc})")
    metas, chunk_files = _index_listing(store.listing())
    parts = _part_regions(store)
    matfree = _matfree_keys(store)
    stage1 = _stage1_keys(L, parts, matfree)
    h, w = L.grid
    # 1. metadata of every array against the table (text only: corrupt JSON never reaches zarr)
    checked = {p: _check_meta(store, p, L, s) for p in sorted(metas) if p}
    meta_ok = {p: ok for p, ok in checked.items() if ok is not None}
    arrays = set(meta_ok)
    required = list(stage1) + [f"regions/{r}/mask" for r in L.regions if r not in parts]
    for key in required:
        recomputable = key in stage1
        if key not in arrays:
            msg = f"{key}: array missing"
            s.problems.append(msg)
        elif meta_ok.get(key, False):
            continue
        else:
            msg = next((p for p in s.problems if p.startswith(key)), f"{key}: bad metadata")
        if recomputable:
            s.missing.append(key)
        else:
            s.unfixable.append(msg)
    if "status" in s.missing:
        return
    chunks = L.chunks()
    pool = _Pool(threads) if full else None
    try:
        _scan_data(store, s, L, chunks, chunk_files, parts, stage1, arrays, pool)
    finally:
        if pool is not None:
            pool.close()


def _present(chunk_files: dict[str, dict[tuple[int, ...], int]], key: str, ndim: int, a: int, chunk: int) -> int | None:
    """Bytes of the chunk holding sample ``a`` of a sample-chunked array (None: absent)."""
    return chunk_files.get(key, {}).get((a // chunk, *([0] * (ndim - 1))))


def _scan_data(store: Store, s: _Scan, L: Layout, chunks: list[tuple[int, int]],
               chunk_files: dict[str, dict[tuple[int, ...], int]], parts: set[str], stage1: list[str],
               arrays: set[str], pool: _Pool | None) -> None:
    g = store.group
    raw, known = _read_status(g, "status", L, L.n, chunks, s, lambda a, b, m: s.unit(a, b, m))
    inv = _invalid("status", raw)
    if inv is not None:
        s.problems.append(inv[0])
        for a, b in chunks:
            if inv[1][a:b].any():
                s.units.setdefault((a, b), []).append(inv[0])
    status = np.where(valid_status(raw), raw, PENDING).astype(np.uint8)
    status[~known] = PENDING
    # static masks: written once at creation, read by every unit (h×w: tiny)
    for r in L.regions:
        key = f"regions/{r}/mask"
        if r in parts or key in s.bad_meta or key not in arrays:
            continue
        per_sample = r in L.per_sample_masks
        spans: list[tuple[int | None, int | None]] = list(chunks) if per_sample else [(None, None)]
        for ma, mb in spans:
            if per_sample and pool is None:
                assert ma is not None
                if _present(chunk_files, key, 3, ma, L.chunk) is None:
                    msg = f"{key}[{ma}:{mb}]: chunk missing; written at store creation"
                    s.problems.append(msg)
                    s.unfixable.append(msg)
                continue
            m, why = _read(g[key], ma, mb)
            if m is None or not np.isfinite(m).all():
                where = "" if ma is None else f"[{ma}:{mb}]"
                msg = (f"{key}{where}: {'unreadable (' + str(why) + ')' if m is None else 'holds NaN/Inf'}; "
                       "written at store creation")
                s.problems.append(msg)
                s.unfixable.append(msg)
    data_keys = [k for k in stage1 if k != "status" and k not in s.missing]
    # every per-region array of the stage is numbers (Grams or eigenpairs, masks) but the landmark flags
    finite_keys = {"latents", "jacobians", *(k for k in data_keys if k.startswith("regions/")
                                             and k.rsplit("/", 1)[-1] not in _LANDMARK_FLAGS)}
    for a, b in chunks:
        finished = status[a:b] != PENDING
        if not finished.any() or (a, b) in s.units:
            continue
        done = status[a:b] == DONE
        for key in data_keys:
            spec = spec_for(key, L)
            # rank from the table row (free symbols such as the matrix-free k need no binding)
            ndim = len(spec[0].shape) if spec is not None and "*tail" not in spec[0].shape else len(geometry(key, L).shape)
            if spec is not None and spec[0].presence and done.any():
                size = _present(chunk_files, key, ndim, a, L.chunk)
                if size is None:
                    s.unit(a, b, f"{key}[{a}:{b}]: chunk missing for samples marked done (deleted chunk file?)")
                    continue
                if size == 0:
                    s.unit(a, b, f"{key}[{a}:{b}]: chunk file empty (0 bytes); truncated chunk file")
                    continue
            if key == "errors" and (status[a:b] == FAILED).any():
                x, why = _read(g[key], a, b)
                if x is None:
                    s.unit(a, b, _unreadable(key, a, b, why or ""))
                    continue
                for i in np.flatnonzero(status[a:b] == FAILED):
                    if not str(x[i]):
                        s.problems.append(f"errors[{a + i}]: sample marked failed without a reason")
                continue
            if pool is None:
                continue

            def check(res: tuple[np.ndarray | None, str | None], key: str = key, a: int = a, b: int = b,
                      done: np.ndarray = done) -> None:
                x, why = res
                if x is None:
                    s.unit(a, b, _unreadable(key, a, b, why or ""))
                    return
                if key in finite_keys and done.any():
                    sel = done
                    region = key.split("/")[1] if key.startswith("regions/") else None
                    if region in L.landmark_regions and not key.endswith("/mask"):
                        # no face found: this region's Grams are NaN by design (regions/<r>/found == 0)
                        sel = done & store.region_found(region, a, b)
                    x = x[sel]
                    bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
                    for i in np.flatnonzero(sel)[bad]:
                        s.unit(a, b, f"{key}[{a + i}]: sample marked done but holds NaN/Inf (missing or corrupt chunk?)")

            pool.read(g[key], a, b, check)
        if pool is not None:
            pool.drain()
    for region, label, path in store.direction_groups():
        _scan_group(store, s, L, chunks, chunk_files, status, known, path, arrays, pool)
    if pool is not None:
        _scan_rest(store, s, arrays, stage1, pool)


def _scan_group(store: Store, s: _Scan, L: Layout, chunks: list[tuple[int, int]],
                chunk_files: dict[str, dict[tuple[int, ...], int]], status: np.ndarray, known: np.ndarray, path: str,
                arrays: set[str], pool: _Pool | None) -> None:
    g = store.group
    missing = [k for k in _RESULT_ARRAYS if f"{path}/{k}" not in arrays]
    broken = [k for k in _RESULT_ARRAYS if f"{path}/{k}" in s.bad_meta]
    if missing or broken:
        s.problems.extend(f"{path}/{k}: array missing" for k in missing)
        s.bad_groups.append(path)
        return
    grp = g[path]
    todo = s.group_units.setdefault(path, set())
    extra = [k for k in sorted(arrays) if k.startswith(f"{path}/") and k.rsplit("/", 1)[-1] not in _RESULT_ARRAYS
             and k.count("/") <= path.count("/") + 2 and f"{k}" not in s.bad_meta]
    extra = [k[len(path) + 1:] for k in extra]

    def on_bad(a: int, b: int, m: str) -> None:
        s.problems.append(m.replace("status", f"{path}/status", 1))
        todo.add((a, b))

    raw, fknown = _read_status(grp, "status", L, L.n, chunks, s, on_bad)
    inv = _invalid(f"{path}/status", raw)
    if inv is not None:
        s.problems.append(inv[0])
        todo.update((a, b) for a, b in chunks if inv[1][a:b].any())
    fst = np.where(valid_status(raw) & fknown, raw, PENDING).astype(np.uint8)
    for a, b in chunks:
        done = fst[a:b] == DONE
        if not done.any() or (a, b) in todo:
            continue
        size = _present(chunk_files, f"{path}/rank", 1, a, L.chunk)
        if size is None or size == 0:
            s.problems.append(f"{path}/rank[{a}:{b}]: chunk {'missing' if size is None else 'file empty'} for "
                              "samples marked done (deleted or truncated chunk file?)")
            todo.add((a, b))
            continue
        if pool is None:
            continue
        for key in ("rank", "spectrum", *extra):
            def check_any(res: tuple[np.ndarray | None, str | None], key: str = key, a: int = a, b: int = b) -> None:
                if res[0] is None:
                    s.problems.append(_unreadable(f"{path}/{key}", a, b, res[1] or ""))
                    todo.add((a, b))

            pool.read(grp[key], a, b, check_any)

        def check_vec(res: tuple[np.ndarray | None, str | None], a: int = a, b: int = b, done: np.ndarray = done) -> None:
            v, why = res
            if v is None:
                s.problems.append(_unreadable(f"{path}/vectors", a, b, why or ""))
                todo.add((a, b))
                return
            rank, _ = _read(grp["rank"], a, b)
            ok = np.isfinite(v[done][:, 0, :]).all(axis=1)
            if rank is not None:
                ok |= rank[done] == 0
            for i in np.flatnonzero(done)[~ok]:
                s.problems.append(f"{path}/vectors[{a + i}]: marked done but the first direction is NaN")
                todo.add((a, b))

        pool.read(grp["vectors"], a, b, check_vec)
    if pool is not None:
        pool.drain()
    orphans = (fst == DONE) & (status != DONE) & known
    if orphans.any():
        s.problems.append(f"{path}: {int(orphans.sum())} samples have directions but no finished Jacobian")
        todo.update((a, b) for a, b in chunks if orphans[a:b].any())


def _scan_rest(store: Store, s: _Scan, arrays: set[str], stage1: list[str], pool: _Pool) -> None:
    """Full scan of the population and transfer arrays: every stored chunk decodes."""
    g = store.group
    for path in sorted(arrays):
        if not path.startswith(("population/", "transfer/")) or path in s.bad_meta:
            continue
        arr = g[path]
        if arr.ndim == 0:

            def check_0d(r: tuple[np.ndarray | None, str | None], p: str = path) -> None:
                if r[0] is None:
                    s.problems.append(f"{p}: unreadable ({r[1]}); truncated or corrupt chunk file")

            pool.read(arr, None, None, check_0d)
            continue
        c0 = arr.chunks[0]
        for a in range(0, max(arr.shape[0], 1), c0):
            b = min(a + c0, arr.shape[0])

            def check(res: tuple[np.ndarray | None, str | None], p: str = path, a: int = a, b: int = b) -> None:
                if res[0] is None:
                    s.problems.append(_unreadable(p, a, b, res[1] or ""))

            pool.read(arr, a, b, check)
    pool.drain()
    for path in sorted(arrays):  # status values of the transfer stage
        if path.endswith("/status") and path.startswith("transfer/") and path not in s.bad_meta:
            x, _ = _read(g[path])
            inv = None if x is None else _invalid(path, x)
            if inv is not None:
                s.problems.append(inv[0])


def verify_store(store: Store, full: bool = True, threads: int | None = None) -> list[str]:
    """Every problem found (empty = OK); reads the store, changes nothing, never raises.

    ``full=False`` is the cheap scan (metadata, status, chunk listing); ``full=True``
    also decodes every chunk, ``threads`` at a time (see the module docstring).
    """
    return _scan(store, full=full, threads=threads).problems


def refuse_if_damaged(store: Store, stages: str, full: bool = False) -> None:
    """For runs without the jacobians stage (which is what repairs a store): raise
    :class:`StoreError` listing the damage instead of failing later on an unreadable chunk."""
    s = _scan(store, check_spec=False, full=full)
    found = s.unfixable + s.missing + [m for msgs in s.units.values() for m in msgs] + s.bad_groups
    found += [f"{p}: {len(u)} result chunk(s) damaged" for p, u in s.group_units.items() if u]
    if found:
        more = f" (+{len(found) - 3} more)" if len(found) > 3 else ""
        raise StoreError(f"{store.uri}: store is damaged: {'; '.join(found[:3])}{more}; --stages {stages} cannot "
                         "repair it; expected an intact store -- run with the jacobians stage (the default) to "
                         "recompute the damaged chunks (see 'lrgan-dist inspect --verify')")


def repair_for_resume(store: Store, full: bool = False) -> list[str]:
    """Reset what a resume can recompute (see module docstring); returns what was reset.

    ``full`` decodes every chunk first (``submit --verify``); the default is the cheap scan.
    Raises :class:`StoreError` for damage a resume cannot recompute.
    """
    s = _scan(store, check_spec=False, full=full)
    if s.unfixable:
        more = f" (+{len(s.unfixable) - 3} more)" if len(s.unfixable) > 3 else ""
        raise StoreError(f"{store.uri}: damaged beyond what a resume recomputes: {'; '.join(s.unfixable[:3])}{more}; "
                         "expected an intact store -- pass --fresh to start over (see 'lrgan-dist inspect --verify')")
    L, g = store.layout, store.group
    done: list[str] = []
    units = set(s.units)
    if s.missing:
        matfree = _matfree_keys(store) or ()
        for key in s.missing:
            if key.rsplit("/", 1)[-1] in matfree:  # k is bound by the jacobians stage, which (re)creates them
                if key in g:
                    del g[key]
            else:
                store.create_array(key)
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
