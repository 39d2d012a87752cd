"""The zarr v3 store: layout (DESIGN.md §4, a contract), provenance, status, resume.

Layout (N samples, d latent dims, chunk = ``store.chunk_samples``)::

    /                                  attrs: spec, fingerprint, lrgan_dist version,
                                       created, generator info, layout
    latents                 f32 [N, d]
    images                  u8  [N, H', W', 3]       preview, H' <= 256
    status                  u8  [N]                  0 pending · 1 done · 2 failed
    errors                  str [N]                  reason for failed samples
    jacobians               f16 [N, c, h, w, d]      only when compute.keep_jacobians
    regions/<name>/mask     f32 [h, w] or [N, h, w]
    regions/<name>/gram_in  f32|f64 [N, d, d]        M_R per sample
    regions/<name>/gram_out f32|f64 [N, d, d]        M_B per sample
    directions/<region>/<label>/vectors   f32 [N, k, d]  unit rows, best first, NaN-padded
    directions/<region>/<label>/rank      i32 [N]
    directions/<region>/<label>/spectrum  f32 [N, d]
    directions/<region>/<label>/status    u8  [N]    factorize status, written last
    population/<region>/<label>/vectors   f32 [k, d]  (+ spectrum, rank)

Rules. Every per-sample array is chunked along the sample axis by the same chunk size,
and a work unit is exactly one chunk, so every chunk has one writer and writes are
whole chunks. Chunk existence is never a done-marker (zarr drops chunks equal to the
fill value): ``status`` is, and it is written after the data. A store is *initialised*
only once its root attribute ``layout`` exists; that attribute is written last at
creation, so an interrupted creation is detected and redone. A store created from a
different data fingerprint is refused unless the caller asks for a fresh one.

Cost: writes are O(chunk bytes); a resume scan reads ``status`` only (N bytes).
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import zarr

from lrgan_dist import __version__

__all__ = ["StoreError", "Layout", "Store", "PENDING", "DONE", "FAILED", "diagnostic_fill"]

PENDING, DONE, FAILED = 0, 1, 2


class StoreError(ValueError):
    """A store that cannot be used as asked (maps to CLI exit code 2)."""


@dataclass(frozen=True)
class Layout:
    """Array geometry fixed when a store is created."""

    n: int
    d: int
    chunk: int
    image_shape: tuple[int, int, int]  # generator output (C, H, W)
    preview_hw: tuple[int, int]
    grid: tuple[int, int]
    channels: int  # c of the analysis output
    regions: tuple[str, ...]
    per_sample_masks: tuple[str, ...]
    gram_dtype: str
    keep_jacobians: bool

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Layout":
        tup = {"image_shape", "preview_hw", "grid", "regions", "per_sample_masks"}
        return cls(**{k: (tuple(v) if k in tup else v) for k, v in d.items()})

    def chunks(self) -> list[tuple[int, int]]:
        return [(s, min(s + self.chunk, self.n)) for s in range(0, self.n, self.chunk)]


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
    kwargs: dict[str, Any] = {"mode": mode, "zarr_format": 3}
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
        attrs = dict(group.attrs)
        if "layout" not in attrs:
            raise StoreError(f"{uri}: not an initialised lrgan-dist store (root attribute 'layout' missing)")
        self.layout = Layout.from_json(attrs["layout"])
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
                    f"{uri}: exists but is not a zarr v3 store ({exc}); use --fresh to replace it or choose another --store"
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
                    f"{uri}: a zarr group that lrgan-dist did not create; expected an empty location or an lrgan-dist store "
                    "(use --fresh to overwrite)"
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
            }
        )
        # Written last: the store counts as initialised only from here on.
        group.attrs["layout"] = layout.to_json()
        return cls(uri, group)

    # ------------------------------------------------------------------ status
    def status(self) -> np.ndarray:
        return np.asarray(self.group["status"][:], dtype=np.uint8)

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

    # ------------------------------------------------------------------ directions
    def direction_group(self, region: str, label: str, method: str, params: Mapping[str, Any], param_hash: str,
                        diagnostics: Mapping[str, tuple[str, tuple[int, ...]]] | None = None) -> str:
        """Path of the result group for (region, label); create it if absent.

        A label whose stored parameters differ gets a new group ``<label>@<hash>``
        rather than a silent overwrite (the original stays as it was).  ``diagnostics``
        (name → (dtype, trailing shape)) are created as ``<group>/diagnostics/<name>``
        [N, …], here in the driver, so parallel writers never race to create them.
        """
        base = f"directions/{region}/{label}"
        path = base
        if path in self.group:
            if self.group[path].attrs.get("param_hash") == param_hash:
                self._require_diagnostics(path, diagnostics)
                return path
            path = f"{base}@{param_hash[:8]}"
            if path in self.group:
                self._require_diagnostics(path, diagnostics)
                return path
        L = self.layout
        grp = self.group.require_group(path)
        cs = L.chunk
        grp.create_array("vectors", shape=(L.n, L.d, L.d), chunks=(cs, L.d, L.d), dtype="f4",
                         fill_value=np.nan, dimension_names=("sample", "direction", "latent"), overwrite=True)
        grp.create_array("rank", shape=(L.n,), chunks=(cs,), dtype="i4", fill_value=-1,
                         dimension_names=("sample",), overwrite=True)
        grp.create_array("spectrum", shape=(L.n, L.d), chunks=(cs, L.d), dtype="f4", fill_value=np.nan,
                         dimension_names=("sample", "component"), overwrite=True)
        grp.create_array("status", shape=(L.n,), chunks=(cs,), dtype="u1", fill_value=0,
                         dimension_names=("sample",), overwrite=True)
        grp.attrs.update({"method": method, "params": dict(params), "param_hash": param_hash, "label": label,
                          "region": region, "created": _now()})
        self._require_diagnostics(path, diagnostics)
        return path

    def _require_diagnostics(self, path: str, schema: Mapping[str, tuple[str, tuple[int, ...]]] | None) -> None:
        if not schema:
            return
        L = self.layout
        dg = self.group.require_group(f"{path}/diagnostics")
        for name, (dtype, tail) in schema.items():
            if name in dg:
                continue
            dg.create_array(name, shape=(L.n, *tail), chunks=(L.chunk, *tail), dtype=dtype,
                            fill_value=diagnostic_fill(dtype),
                            dimension_names=("sample", *["component"] * len(tail)))

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
        out = []
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
        methods = {}
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


def diagnostic_fill(dtype: str) -> Any:
    """Fill value of a per-sample diagnostics array: NaN (float), -1 (int), 0 (unsigned/bool)."""
    return {"f": np.nan, "i": -1, "u": 0}[np.dtype(dtype).kind]


def _create_arrays(g: zarr.Group, L: Layout, static_masks: Mapping[str, np.ndarray]) -> None:
    cs = L.chunk
    g.create_array("latents", shape=(L.n, L.d), chunks=(cs, L.d), dtype="f4", fill_value=np.nan,
                   dimension_names=("sample", "latent"))
    g.create_array("images", shape=(L.n, *L.preview_hw, 3), chunks=(cs, *L.preview_hw, 3), dtype="u1",
                   fill_value=0, dimension_names=("sample", "row", "col", "rgb"))
    g.create_array("status", shape=(L.n,), chunks=(cs,), dtype="u1", fill_value=PENDING, dimension_names=("sample",))
    g.create_array("errors", shape=(L.n,), chunks=(cs,), dtype=str, dimension_names=("sample",))
    h, w = L.grid
    if L.keep_jacobians:
        g.create_array("jacobians", shape=(L.n, L.channels, h, w, L.d), chunks=(cs, L.channels, h, w, L.d),
                       dtype="f2", fill_value=np.nan, dimension_names=("sample", "channel", "row", "col", "latent"))
    gd = "f8" if L.gram_dtype == "float64" else "f4"
    for name in L.regions:
        rg = g.require_group(f"regions/{name}")
        if name in L.per_sample_masks:
            arr = rg.create_array("mask", shape=(L.n, h, w), chunks=(cs, h, w), dtype="f4", fill_value=np.nan,
                                  dimension_names=("sample", "row", "col"))
            if name in static_masks:  # per-sample masks from a file: written once, here
                m = np.asarray(static_masks[name], dtype=np.float32)
                assert m.shape == (L.n, h, w), (name, m.shape)
                arr[...] = m
        else:
            m = np.asarray(static_masks[name], dtype=np.float32)
            assert m.shape == (h, w), (name, m.shape)
            arr = rg.create_array("mask", shape=(h, w), chunks=(h, w), dtype="f4", fill_value=np.nan,
                                  dimension_names=("row", "col"))
            arr[...] = m
        for key in ("gram_in", "gram_out"):
            rg.create_array(key, shape=(L.n, L.d, L.d), chunks=(cs, L.d, L.d), dtype=gd, fill_value=np.nan,
                            dimension_names=("sample", "latent_i", "latent_j"))


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


def remove_store(uri: str) -> None:
    """Delete a store (used by --fresh on local paths before re-creation)."""
    if _is_remote(uri):
        open_group(uri, "w")
        return
    p = Path(uri.removeprefix("file://"))
    if p.exists():
        shutil.rmtree(p)


def to_jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))
