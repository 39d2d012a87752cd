"""The zarr v3 store: provenance, status, resume, result groups (docs/architecture.md, a contract).

The arrays themselves -- paths, geometry, dtypes, fill values, dimension names and
attributes -- are declared once in :mod:`lrgan_dist.store.layout` (``TABLE``); this
module creates them from it (:meth:`Store.create_array`, :func:`create_array` for
stages holding a group). Arrays created from now on carry a crc32c checksum after
compression, so a flipped byte fails to decode. Root attrs: spec, fingerprint,
lrgan_dist version, created, generator info, ``store_format`` (2: the table's
contract), ``layout`` (written last).

Result groups ``<kind>/<region>/<label>`` (kind ``directions`` or ``population``) follow
one rule, :meth:`Store.find_result_group`: the label's group when its ``param_hash``
matches, else ``<label>@<hash8>``.

Rules. Every per-sample array is chunked along the sample axis by the same chunk size,
and a work unit is exactly one chunk, so every chunk has one writer and writes are
whole chunks. Chunk existence is never a done-marker (zarr drops chunks equal to the
fill value): ``status`` is, and it is written after the data. A store is *initialised*
only once its root attribute ``layout`` exists; that attribute is written last at
creation, so an interrupted creation is detected and redone. A store created from a
different data fingerprint is refused unless the caller asks for a fresh one.

Cost: writes are O(chunk bytes); a resume scan reads ``status`` only (N bytes);
:meth:`Store.consolidate` one small read per array.
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, cast

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from lrgan_dist import __version__
from lrgan_dist.store.layout import (
    DONE,
    FAILED,
    PENDING,
    STORE_FORMAT,
    Geometry,
    Layout,
    diagnostic_fill,
    geometry,
    normalize_status,
)

__all__ = ["StoreError", "Layout", "Store", "PENDING", "DONE", "FAILED", "diagnostic_fill", "create_array",
           "read_rows", "is_lrgan_store", "remove_store", "RESULT_KINDS"]

#: bytes-to-bytes codecs of every array created from now on: compression, then a crc32c
#: checksum (a flipped byte fails to decode instead of reading as other finite values).
COMPRESSORS = (ZstdCodec(level=0), Crc32cCodec())
#: kinds of result groups keyed ``<kind>/<region>/<label>`` (see :meth:`Store.find_result_group`)
RESULT_KINDS = ("directions", "population")


class StoreError(ValueError):
    """A store that cannot be used as asked (maps to CLI exit code 2)."""


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _storage_options(uri: str) -> dict[str, Any] | None:
    if not uri.startswith("s3://"):
        return None
    import os

    opts: dict[str, Any] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["endpoint_url"] = endpoint
    return opts


def open_group(uri: str, mode: str) -> zarr.Group:
    """Open a zarr v3 group at a local path or fsspec URI (``s3://`` and others)."""
    # use_consolidated=False: our readers always see live metadata; consolidated metadata
    # (Store.consolidate) is for outside readers (xarray) and may lag behind a running stage.
    kwargs: dict[str, Any] = {"mode": mode, "zarr_format": 3, "use_consolidated": False}
    opts = _storage_options(uri)
    if opts is not None:
        kwargs["storage_options"] = opts
    return zarr.open_group(store=uri, **kwargs)


def store_exists(uri: str) -> bool:
    if not _is_remote(uri):
        p = Path(uri.removeprefix("file://"))
        return p.exists() and any(p.iterdir()) if p.is_dir() else p.exists()
    try:
        open_group(uri, "r")
        return True
    except Exception:  # noqa: BLE001 - any failure to open means "not a store here"
        return False


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Store:
    """A handle on one analysis store; cheap to create in every worker."""

    def __init__(self, uri: str, group: zarr.Group):
        self.uri = uri
        self.group = group
        attrs: dict[str, Any] = dict(group.attrs)  # JSON values; each key's type is the store contract
        if "layout" not in attrs:
            raise StoreError(f"{uri}: not an initialised lrgan-dist store (root attribute 'layout' missing)")
        try:
            self.layout = Layout.from_json(attrs["layout"])
        except (TypeError, ValueError, AttributeError) as exc:
            raise StoreError(f"{uri}: root attribute 'layout' is malformed ({exc}); expected the layout "
                             "lrgan-dist wrote at creation") from None
        self.fingerprint: str = attrs.get("fingerprint", "")
        self.spec: dict[str, Any] = attrs.get("spec", {})

    # ------------------------------------------------------------------ open/create
    @classmethod
    def open(cls, uri: str, mode: str = "r") -> "Store":
        if not store_exists(uri):
            raise StoreError(f"{uri}: no store at this location; expected a store written by 'lrgan-dist submit'")
        try:
            group = open_group(uri, "r" if mode == "r" else "r+")
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"{uri}: cannot open as a zarr v3 group ({exc}); expected an lrgan-dist store") from None
        return cls(uri, group)

    @classmethod
    def create(
        cls,
        uri: str,
        *,
        layout: Layout,
        spec: Mapping[str, Any],
        fingerprint: str,
        generator_info: Mapping[str, Any],
        static_masks: Mapping[str, np.ndarray],
        fresh: bool = False,
        spec_base_dir: str = ".",
    ) -> "Store":
        """Open the store for ``fingerprint``; create it when absent (or ``fresh``).

        Refuses (StoreError) an existing store with another fingerprint unless fresh.
        """
        if store_exists(uri) and not fresh:
            try:
                group = open_group(uri, "r+")
            except Exception as exc:  # noqa: BLE001
                raise StoreError(
                    f"{uri}: exists but is not a zarr v3 store ({exc}); expected an empty location or an lrgan-dist "
                    "store -- choose another --store"
                ) from None
            attrs = dict(group.attrs)
            if "layout" in attrs:
                if attrs.get("fingerprint") != fingerprint:
                    raise StoreError(
                        f"{uri}: store was created by another job spec (fingerprint {str(attrs.get('fingerprint'))[:12]}, "
                        f"this spec {fingerprint[:12]}); expected the same spec — pass --fresh to start over "
                        "or choose another --store"
                    )
                return cls(uri, group)
            if attrs.get("lrgan_dist_creating") is None and any(True for _ in group.keys()):
                raise StoreError(
                    f"{uri}: a zarr group that lrgan-dist did not create; expected an empty location or an lrgan-dist "
                    "store -- choose another --store"
                )
            # An interrupted creation of ours: start it again.
        _check_writable(uri)
        group = open_group(uri, "w")
        group.attrs["lrgan_dist_creating"] = _now()
        _create_arrays(group, layout, static_masks)
        group.attrs.update(
            {
                "spec": dict(spec),
                "fingerprint": fingerprint,
                "lrgan_dist_version": __version__,
                "created": _now(),
                "generator": dict(generator_info),
                "spec_base_dir": str(spec_base_dir),
                "store_format": STORE_FORMAT,
            }
        )
        # Written last: the store counts as initialised only from here on.
        group.attrs["layout"] = layout.to_json()
        return cls(uri, group)

    # ------------------------------------------------------------------ status
    def refresh(self) -> None:
        """Forget cached listings of an fsspec store (s3fs caches directory listings per
        filesystem instance, so chunks other processes wrote since would read as absent)."""
        fs = getattr(self.group.store, "fs", None)
        if fs is not None and hasattr(fs, "invalidate_cache"):
            fs.invalidate_cache()

    def status(self, path: str = "status", raw: bool = False) -> np.ndarray:
        """A status array [N]; values outside the defined codes read as PENDING unless ``raw``."""
        self.refresh()  # status is written by other processes (actors): never read it from a stale listing
        s = np.asarray(self.group[path][:], dtype=np.uint8)
        return s if raw else normalize_status(s)

    @property
    def format(self) -> int:
        """1 for stores written before the layout table (no dimension-name/attribute/checksum contract)."""
        return int(cast(int, self.group.attrs.get("store_format", 1)))

    def create_array(self, path: str, shape: tuple[int, ...] | None = None, *, dtype: str | None = None,
                     tail: tuple[int, ...] = (), overwrite: bool = True, **symbols: int) -> zarr.Array:
        """Create the array at ``path`` as the layout table declares it (see :func:`create_array`)."""
        parent, _, leaf = path.rpartition("/")
        grp = self.group.require_group(parent) if parent else self.group
        return _new_array(grp, leaf, geometry(path, self.layout, shape, dtype=dtype, tail=tail, **symbols), overwrite)

    def consolidate(self) -> None:
        """Write zarr consolidated metadata (for xarray / plain zarr readers); call after each stage.

        Cost: one listing and one small read per array of the store; our own code never
        reads it (it opens with ``use_consolidated=False``), so a stale copy is harmless.
        """
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "consolidated metadata is not part of the v3 spec"
            zarr.consolidate_metadata(self.group.store, zarr_format=3)

    def listing(self) -> dict[str, int]:
        """Every key of the store with its size in bytes: one listing, no reads.

        Local stores: one ``os.walk``; fsspec stores: one ``find(detail=True)``.
        """
        st = self.group.store
        root = getattr(st, "root", None)
        if root is not None:
            import os

            base = str(root)
            out: dict[str, int] = {}
            for dirpath, _, files in os.walk(base):
                rel = os.path.relpath(dirpath, base)
                for f in files:
                    key = f if rel == "." else f"{rel}/{f}".replace(os.sep, "/")
                    try:
                        out[key] = os.stat(os.path.join(dirpath, f)).st_size
                    except OSError:
                        continue
            return out
        fs, path = getattr(st, "fs", None), getattr(st, "path", None)
        if fs is not None and path is not None:
            from zarr.core.sync import sync

            self.refresh()
            found = sync(fs._find(path, detail=True)) if getattr(fs, "asynchronous", False) else fs.find(path, detail=True)
            self.refresh()  # the listing must not shadow chunks written after it
            plen = len(path.rstrip("/")) + 1
            return {k[plen:]: int(v.get("size") or 0) for k, v in found.items()}
        from zarr.core.sync import sync

        async def _all() -> dict[str, int]:
            return {k: await st.getsize(k) async for k in st.list()}

        return sync(_all())

    def read_key(self, key: str) -> bytes | None:
        """Raw bytes of one store key (e.g. an array's ``zarr.json``), None when absent."""
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        buf = sync(self.group.store.get(key, prototype=default_buffer_prototype()))
        return None if buf is None else buf.to_bytes()

    # ------------------------------------------------------------------ result groups
    def find_result_group(self, kind: str, region: str, label: str, param_hash: str) -> str | None:
        """Path of the result group of (kind, region, label) computed with ``param_hash``, or None.

        The one ``label@hash8`` rule: ``<kind>/<region>/<label>`` when its stored
        ``param_hash`` matches, else ``<kind>/<region>/<label>@<hash8>`` when it exists.
        """
        if kind not in RESULT_KINDS:
            raise ValueError(f"kind: received {kind!r}; expected one of {list(RESULT_KINDS)}")
        base = f"{kind}/{region}/{label}"
        if base in self.group and self.group[base].attrs.get("param_hash") == param_hash:
            return base
        alt = f"{base}@{param_hash[:8]}"
        if alt in self.group and self.group[alt].attrs.get("param_hash", param_hash) == param_hash:
            return alt
        return None

    def result_group(self, kind: str, region: str, label: str, param_hash: str,
                     attrs: Mapping[str, Any] | None = None) -> tuple[str, bool]:
        """(path, created): the group :meth:`find_result_group` names, created when absent.

        A new group is ``<label>`` when that name is free, else ``<label>@<hash8>`` (the
        group of other parameters stays as it was); ``attrs`` (with ``param_hash``) are
        written on creation.
        """
        found = self.find_result_group(kind, region, label, param_hash)
        if found is not None:
            return found, False
        base = f"{kind}/{region}/{label}"
        path = base if base not in self.group else f"{base}@{param_hash[:8]}"
        grp = self.group.require_group(path)
        grp.attrs.update({**dict(attrs or {}), "param_hash": param_hash, "label": label, "region": region})
        return path, True

    def counts(self, status: np.ndarray | None = None) -> dict[str, int]:
        s = self.status() if status is None else status
        return {"pending": int((s == PENDING).sum()), "done": int((s == DONE).sum()), "failed": int((s == FAILED).sum())}

    def pending_units(self, retry_failed: bool = False) -> list[tuple[int, int]]:
        """Chunks that still hold a pending sample (or a failed one, if retrying)."""
        s = self.status()
        todo = (s == PENDING) | ((s == FAILED) if retry_failed else False)
        return [(a, b) for a, b in self.layout.chunks() if todo[a:b].any()]

    def errors(self) -> dict[int, str]:
        s = self.status()
        failed = np.flatnonzero(s == FAILED)
        if failed.size == 0:
            return {}
        errs = self.group["errors"][:]
        return {int(i): str(errs[i]) for i in failed}

    # ------------------------------------------------------------------ sample data
    def write_unit(self, start: int, stop: int, data: Mapping[str, np.ndarray], status: np.ndarray, errors: Iterable[str]) -> None:
        """Write one work unit (exactly one chunk) of the jacobians stage; status last."""
        self._check_unit(start, stop)
        n = stop - start
        g = self.group
        for key, arr in data.items():
            target = g[key]
            if arr.shape[0] != n or tuple(arr.shape[1:]) != tuple(target.shape[1:]):
                raise ValueError(f"{key}: expected shape {[n, *target.shape[1:]]}, received {list(arr.shape)}")
            target[start:stop] = arr
        g["errors"][start:stop] = np.asarray(list(errors), dtype=object).astype(str)
        st = np.asarray(status, dtype=np.uint8)
        assert st.shape == (n,)
        g["status"][start:stop] = st

    def _check_unit(self, start: int, stop: int) -> None:
        if (start, stop) not in set(self.layout.chunks()):
            raise ValueError(f"work unit [{start}, {stop}) is not one chunk of size {self.layout.chunk}")

    def read(self, key: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        arr = self.group[key]
        return np.asarray(arr[start:stop] if start is not None or stop is not None else arr[...])

    def region_mask(self, region: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """[h, w] static mask broadcast to the unit, or [n, h, w] per-sample masks."""
        arr = self.group[f"regions/{region}/mask"]
        if arr.ndim == 2:
            return np.asarray(arr[...])
        return np.asarray(arr[start:stop] if start is not None else arr[...])

    def region_found(self, region: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """bool [n]: whether the region exists in each sample -- ``regions/<r>/found`` for a
        landmark region (False: no face detected), all True for every other region."""
        a = 0 if start is None else start
        b = self.layout.n if stop is None else stop
        if region not in self.layout.landmark_regions:
            return np.ones(b - a, dtype=bool)
        return np.asarray(self.group[f"regions/{region}/found"][a:b]) == 1

    # ------------------------------------------------------------------ directions
    def direction_group(self, region: str, label: str, method: str, params: Mapping[str, Any], param_hash: str,
                        diagnostics: Mapping[str, tuple[str, tuple[int, ...]]] | None = None,
                        rows: int | None = None) -> str:
        """Path of the per-sample result group for (region, label); create it if absent.

        ``rows``: the most direction rows per sample (``vectors`` [N, rows, d], ``spectrum``
        [N, rows]); default d.

        A label whose stored parameters differ gets a new group ``<label>@<hash>``
        rather than a silent overwrite (the original stays as it was; see
        :meth:`result_group`).  ``diagnostics`` (name → (dtype, trailing shape)) are created
        as ``<group>/diagnostics/<name>`` [N, …], here in the driver, so parallel writers
        never race to create them.
        """
        path = self.find_result_group("directions", region, label, param_hash)
        if path is None:
            base = f"directions/{region}/{label}"
            path = base if base not in self.group else f"{base}@{param_hash[:8]}"
            r = self.layout.d if rows is None else rows
            for name in ("vectors", "rank", "spectrum", "status"):
                if name in ("vectors", "spectrum"):
                    self.create_array(f"{path}/{name}", r=r)
                else:
                    self.create_array(f"{path}/{name}")
            # attributes last: a group counts as found only once its arrays exist
            self.group[path].attrs.update({"method": method, "params": dict(params), "param_hash": param_hash,
                                           "label": label, "region": region, "created": _now()})
        self._require_diagnostics(path, diagnostics)
        return path

    def _require_diagnostics(self, path: str, schema: Mapping[str, tuple[str, tuple[int, ...]]] | None) -> None:
        if not schema:
            return
        dg = self.group.require_group(f"{path}/diagnostics")
        for name, (dtype, tail) in schema.items():
            if name not in dg:
                self.create_array(f"{path}/diagnostics/{name}", dtype=dtype, tail=tuple(tail))

    def write_directions(self, path: str, start: int, stop: int, vectors: np.ndarray, rank: np.ndarray,
                         spectrum: np.ndarray, status: np.ndarray, diagnostics: Mapping[str, np.ndarray] | None = None) -> None:
        self._check_unit(start, stop)
        g = self.group[path]
        g["vectors"][start:stop] = vectors.astype(np.float32)
        g["rank"][start:stop] = rank.astype(np.int32)
        g["spectrum"][start:stop] = spectrum.astype(np.float32)
        for key, arr in (diagnostics or {}).items():  # created by direction_group
            g[f"diagnostics/{key}"][start:stop] = arr
        g["status"][start:stop] = status.astype(np.uint8)

    def direction_groups(self) -> list[tuple[str, str, str]]:
        """(region, label, path) of every stored per-sample result group."""
        out: list[tuple[str, str, str]] = []
        if "directions" not in self.group:
            return out
        for region, rg in self.group["directions"].groups():
            for label, _ in rg.groups():
                out.append((region, label, f"directions/{region}/{label}"))
        return sorted(out)

    # ------------------------------------------------------------------ summary
    def describe(self) -> dict[str, Any]:
        """Everything `lrgan-dist inspect` shows, as JSON-able data."""
        arrays = []

        def walk(grp: zarr.Group, prefix: str) -> None:
            for name, arr in sorted(grp.arrays()):
                arrays.append(
                    {
                        "path": f"{prefix}{name}",
                        "shape": list(arr.shape),
                        "chunks": list(arr.chunks),
                        "dtype": str(arr.dtype),
                        "codecs": [type(c).__name__ for c in (*arr.filters, arr.serializer, *arr.compressors) if c is not None],
                        "dimension_names": list(arr.metadata.dimension_names or []),
                    }
                )
            for name, sub in sorted(grp.groups()):
                walk(sub, f"{prefix}{name}/")

        walk(self.group, "")
        counts = self.counts()
        methods: dict[str, dict[str, Any]] = {}
        for region, label, path in self.direction_groups():
            g = self.group[path]
            st = np.asarray(g["status"][:])
            methods.setdefault(region, {})[label] = {
                "method": g.attrs.get("method"),
                "param_hash": g.attrs.get("param_hash"),
                "done": int((st == DONE).sum()),
                "failed": int((st == FAILED).sum()),
            }
        return {
            "uri": self.uri,
            "fingerprint": self.fingerprint,
            "lrgan_dist_version": self.group.attrs.get("lrgan_dist_version"),
            "created": self.group.attrs.get("created"),
            "generator": self.group.attrs.get("generator"),
            "layout": self.layout.to_json(),
            "samples": {"total": self.layout.n, **counts},
            "complete": counts["pending"] == 0,
            "regions": list(self.layout.regions),
            "methods": methods,
            "arrays": arrays,
            "spec": self.spec,
        }


def _new_array(group: zarr.Group, name: str, geo: Geometry, overwrite: bool = True) -> zarr.Array:
    """Create one array of the table in ``group`` (geometry, codecs with crc32c, attributes)."""
    kw: dict[str, Any] = {} if geo.fill is None else {"fill_value": geo.fill}
    arr = group.create_array(name, shape=geo.shape, chunks=geo.chunks, dtype=geo.dtype, compressors=COMPRESSORS,
                             dimension_names=geo.dims, attributes=dict(geo.attributes), overwrite=overwrite, **kw)
    return arr


def _root_layout(group: zarr.Group) -> Layout:
    root = zarr.open_group(store=group.store, path="", mode="r", zarr_format=3, use_consolidated=False)
    return Layout.from_json(cast(Mapping[str, Any], root.attrs["layout"]))  # a JSON object attr


def subgroup(group: zarr.Group, path: str) -> zarr.Group:
    """``group[path]`` where ``path`` names a group (zarr types ``Group.__getitem__`` as ``Array | Group``)."""
    return cast(zarr.Group, group[path])


def attrs_of(node: Any) -> dict[str, Any]:
    """``dict(node.attrs)`` of a zarr group or array, typed ``dict[str, Any]``.

    zarr types attribute values as the ``JSON`` union; each key's actual type is fixed by the
    store's contract, so readers index and convert them without a cast per access.
    """
    return dict(node.attrs)


def read_rows(arr: Any, rows: slice | Sequence[int] | np.ndarray) -> np.ndarray:
    """Rows of an array along axis 0: a slice, or any sample indices (one orthogonal
    selection, each chunk read once; an empty index gives [0, …] of the array's dtype)."""
    if isinstance(rows, slice):
        return np.asarray(arr[rows])
    idx = np.asarray(rows, dtype=np.int64)
    if idx.size == 0:
        return np.zeros((0, *arr.shape[1:]), dtype=arr.dtype)
    return np.asarray(arr.oindex[idx])


def create_array(group: zarr.Group, name: str, shape: tuple[int, ...] | None = None, *, layout: Layout | None = None,
                 dtype: str | None = None, tail: tuple[int, ...] = (), overwrite: bool = True, **symbols: int) -> zarr.Array:
    """Create ``<group>/<name>`` as :mod:`lrgan_dist.store.layout` declares it.

    For stages that hold a zarr group: ``shape`` binds the row's free symbols (sources,
    directions, pairs, ...) and is checked against the store's Layout (read from the root
    when ``layout`` is not given). Raises ValueError for a path or shape outside the table.
    """
    path = f"{group.path}/{name}".strip("/")
    geo = geometry(path, layout or _root_layout(group), shape, dtype=dtype, tail=tail, **symbols)
    return _new_array(group, name, geo, overwrite)


def _create_arrays(g: zarr.Group, L: Layout, static_masks: Mapping[str, np.ndarray]) -> None:
    paths = ["latents", "images", "status", "errors", *(["jacobians"] if L.keep_jacobians else [])]
    for name in L.regions:
        paths += [f"regions/{name}/{k}" for k in ("mask", "gram_in", "gram_out")]
        if name in L.landmark_regions:
            paths += [f"regions/{name}/found", f"regions/{name}/reason"]
    for path in paths:
        parent, _, leaf = path.rpartition("/")
        arr = _new_array(g.require_group(parent) if parent else g, leaf, geometry(path, L))
        region = path.split("/")[1] if path.endswith("/mask") else None
        if region is not None and region in static_masks:  # static masks and per-sample mask files: written once, here
            m = np.asarray(static_masks[region], dtype=np.float32)
            if m.shape != arr.shape:
                raise ValueError(f"regions/{region}/mask: received shape {list(m.shape)}; expected {list(arr.shape)}")
            arr[...] = m
        elif region is not None and region not in L.per_sample_masks:
            raise ValueError(f"regions/{region}/mask: static mask missing; expected one in static_masks")


def _check_writable(uri: str) -> None:
    if _is_remote(uri):
        return
    p = Path(uri.removeprefix("file://"))
    parent = p if p.exists() else p.parent
    while not parent.exists():
        parent = parent.parent
    import os

    if not os.access(parent, os.W_OK):
        raise StoreError(f"{uri}: location is not writable (no write permission on {parent}); expected a writable path")


def is_lrgan_store(uri: str) -> bool:
    """Whether ``uri`` holds a store lrgan-dist created (root ``zarr.json`` of a zarr v3 group
    with the root attribute ``layout`` or the creation marker ``lrgan_dist_creating``)."""
    if not _is_remote(uri):
        meta = Path(uri.removeprefix("file://")) / "zarr.json"
        try:
            doc = json.loads(meta.read_text())
        except (OSError, ValueError):
            return False
        attrs = doc.get("attributes") if isinstance(doc, dict) else None
        return (doc.get("node_type") == "group" and isinstance(attrs, dict)
                and ("layout" in attrs or "lrgan_dist_creating" in attrs))
    try:
        attrs = dict(open_group(uri, "r").attrs)
    except Exception:  # noqa: BLE001 - not a zarr group at all
        return False
    return "layout" in attrs or "lrgan_dist_creating" in attrs


def remove_store(uri: str) -> None:
    """Delete a store (``--fresh``); refuses anything that is not recognisably an lrgan-dist store.

    Raises StoreError for a foreign location (a directory of other files, a zarr store
    another tool wrote, a plain file): nothing is removed.
    """
    if not store_exists(uri):
        return
    if not is_lrgan_store(uri):
        raise StoreError(f"{uri}: not an lrgan-dist store (no root zarr.json with the attribute 'layout' or "
                         "'lrgan_dist_creating'); refusing to delete it; expected an lrgan-dist store or an empty "
                         "location -- choose another --store")
    if _is_remote(uri):
        open_group(uri, "w")
        return
    shutil.rmtree(Path(uri.removeprefix("file://")))
