"""The store layout as one declarative table (docs/architecture.md, a contract).

Every array any stage creates is one :class:`ArraySpec` row of :data:`TABLE`: its path
template, geometry (shape and chunks as symbols bound from the store's :class:`Layout`
or from the array's own shape), dtype, fill value, ``dimension_names`` and
attributes (``description``, ``units``, ``flag_values``/``flag_meanings``). Creation
(:mod:`.zarrstore`), the population and transfer stages (through
:func:`lrgan_dist.store.zarrstore.create_array`) and :mod:`.verify` all read it; nobody
else declares geometry.

Symbols. ``n`` samples, ``d`` latent dims, ``chunk`` samples per chunk, ``h``/``w``
analysis grid, ``ph``/``pw`` preview size, ``c`` analysis channels come from the
Layout; any other symbol (``S`` sources, ``k`` directions, ``P`` pairs, ``A``
strengths, ``M`` similarity samples, ...) is *free*: bound from the shape the caller
passes, and must bind consistently (``[S, k, d]`` with ``d`` ≠ the store's is refused).
``*tail`` is a variable number of trailing axes (per-sample diagnostics). Chunk sizes
are the resolved symbols clipped below at 1 (zarr needs chunks ≥ 1 on empty axes).

Dimension names: one name per meaning — the preview's ``preview_row`` is not the
grid's ``row``; a subset of samples (``similarity_sample``) is not ``sample``.

Status codes (:data:`PENDING`, :data:`DONE`, :data:`FAILED`) are defined here once;
any other stored value is invalid: :func:`valid_status` tells which, readers treat
them as pending (:func:`normalize_status`) and ``verify`` reports them.

Cost: pure Python on a few dozen rows; resolving a path is one regex match per row.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

__all__ = [
    "PENDING", "DONE", "FAILED", "STATUS_FLAGS", "PREVIEW_SOURCES", "MATFREE_PARTS", "matfree_names", "STORE_FORMAT",
    "Layout", "ArraySpec", "Geometry", "TABLE",
    "spec_for", "geometry", "diagnostic_fill", "valid_status", "normalize_status", "fill_equal", "V3_DTYPE",
]

PENDING, DONE, FAILED = 0, 1, 2
STATUS_FLAGS: tuple[tuple[int, str], ...] = ((PENDING, "pending"), (DONE, "done"), (FAILED, "failed"))
#: root attribute ``store_format`` of stores whose arrays carry the table's dimension names,
#: attributes and the crc32c codec; stores without it (format 1) predate the table.
STORE_FORMAT = 2


def valid_status(s: np.ndarray) -> np.ndarray:
    """True where a stored status value is one of the defined codes."""
    return np.isin(s, [c for c, _ in STATUS_FLAGS])


def normalize_status(s: np.ndarray) -> np.ndarray:
    """Status with every undefined value read as :data:`PENDING` (recompute, never trust)."""
    s = np.asarray(s, dtype=np.uint8)
    return np.where(valid_status(s), s, PENDING).astype(np.uint8)


def diagnostic_fill(dtype: str) -> Any:
    """Fill value of a per-sample diagnostics array: NaN (float), -1 (int), 0 (unsigned/bool)."""
    return {"f": np.nan, "i": -1, "u": 0, "b": False}[np.dtype(dtype).kind]


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
    landmark_regions: tuple[str, ...] = ()  # per-sample masks detected on the rendered image (found/reason)

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Layout":
        tup = {"image_shape", "preview_hw", "grid", "regions", "per_sample_masks", "landmark_regions"}
        kw: dict[str, Any] = {k: (tuple(v) if k in tup else v) for k, v in d.items()}
        return cls(**kw)

    def chunks(self) -> list[tuple[int, int]]:
        return [(s, min(s + self.chunk, self.n)) for s in range(0, self.n, self.chunk)]

    def symbols(self) -> dict[str, int]:
        """The Layout's geometry symbols (see module docstring)."""
        return {"n": self.n, "d": self.d, "chunk": self.chunk, "h": self.grid[0], "w": self.grid[1],
                "ph": self.preview_hw[0], "pw": self.preview_hw[1], "c": self.channels}


Dim = str | int


@dataclass(frozen=True)
class ArraySpec:
    """One array of the layout. ``dtype`` ``"gram"`` = the Layout's Gram precision;
    ``"given"`` = chosen by the writer (diagnostics); ``fill`` ``"auto"`` = :func:`diagnostic_fill`."""

    kind: str
    path: str  # template, placeholders {region} {label} {scored} {name}
    shape: tuple[Dim, ...]
    chunks: tuple[Dim, ...]
    dtype: str
    fill: Any
    dims: tuple[str, ...]
    description: str
    stage: str
    units: str | None = None
    flags: tuple[tuple[int, str], ...] = ()
    presence: bool = False  # a chunk holding a done sample is never all fill: it must exist
    per_sample: bool = False  # axis 0 is the sample axis, chunked by ``chunk``
    when: str | None = None  # Layout condition: "keep_jacobians", "static_mask", "per_sample_mask"
    status_of: str | None = None  # for status arrays: what they mark done

    def attributes(self) -> dict[str, Any]:
        out: dict[str, Any] = {"description": self.description}
        if self.units:
            out["units"] = self.units
        if self.flags:
            out["flag_values"] = [v for v, _ in self.flags]
            out["flag_meanings"] = " ".join(m for _, m in self.flags)
        return out

    @property
    def pattern(self) -> re.Pattern[str]:
        return _pattern(self.path)


@dataclass(frozen=True)
class Geometry:
    """An :class:`ArraySpec` resolved for one store and one array."""

    spec: ArraySpec
    path: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype[Any] | type[str]
    fill: Any
    dims: tuple[str, ...] | None
    attributes: dict[str, Any] = field(default_factory=dict)


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _pattern(template: str) -> re.Pattern[str]:
    if template not in _PATTERNS:
        rx = re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?P<{m.group(1)}>[^/]+)", re.escape(template))
        _PATTERNS[template] = re.compile(f"^{rx}$")
    return _PATTERNS[template]


_STATUS = STATUS_FLAGS
#: per-region arrays of a ``compute.jacobian: matfree`` store, ``regions/<r>/<part>_<side>``
#: (rows ``matfree_*`` below); ``union`` only when a method needs it (compressed LowRankGAN)
MATFREE_PARTS: tuple[str, ...] = ("basis", "eig", "residual", "union")


def matfree_names(union: bool = True) -> tuple[str, ...]:
    """The matrix-free array names of one region (``basis_in``, ``basis_out``, …)."""
    return tuple(f"{p}_{side}" for p in MATFREE_PARTS if union or p != "union" for side in ("in", "out"))


_SAMPLE_TABLE: tuple[ArraySpec, ...] = (
    ArraySpec("latents", "latents", ("n", "d"), ("chunk", "d"), "f4", np.nan, ("sample", "latent"),
              "latent code of each sample, deterministic from (samples.seed, index)", "jacobians",
              presence=True, per_sample=True),
    ArraySpec("images", "images", ("n", "ph", "pw", 3), ("chunk", "ph", "pw", 3), "u1", 0,
              ("sample", "preview_row", "preview_col", "rgb"), "preview image of each sample (H' <= 256)",
              "jacobians", units="8-bit sRGB", per_sample=True),
    ArraySpec("status", "status", ("n",), ("chunk",), "u1", PENDING, ("sample",),
              "jacobians-stage status of each sample, written after its data", "jacobians", flags=_STATUS,
              per_sample=True, status_of="sample"),
    ArraySpec("errors", "errors", ("n",), ("chunk",), "str", "", ("sample",),
              "reason a sample failed (empty unless status is failed)", "jacobians", per_sample=True),
    ArraySpec("jacobians", "jacobians", ("n", "c", "h", "w", "d"), ("chunk", "c", "h", "w", "d"), "f2", np.nan,
              ("sample", "channel", "row", "col", "latent"), "Jacobian of the pooled analysis output",
              "jacobians", presence=True, per_sample=True, when="keep_jacobians"),
    ArraySpec("region_mask", "regions/{region}/mask", ("h", "w"), ("h", "w"), "f4", np.nan, ("row", "col"),
              "region mask R on the analysis grid (1 inside, 0 outside)", "create", when="static_mask"),
    ArraySpec("region_mask_per_sample", "regions/{region}/mask", ("n", "h", "w"), ("chunk", "h", "w"), "f4",
              np.nan, ("sample", "row", "col"), "per-sample region mask R on the analysis grid", "jacobians",
              presence=True, per_sample=True, when="per_sample_mask"),
    ArraySpec("region_found", "regions/{region}/found", ("n",), ("chunk",), "u1", 0, ("sample",),
              "landmark region: 1 when the detector found a face in the sample's own image, 0 when not "
              "(empty mask, NaN Grams: the sample is left out of this region only)", "jacobians",
              flags=((0, "no_face"), (1, "found")), per_sample=True, when="landmark_regions"),
    ArraySpec("region_reason", "regions/{region}/reason", ("n",), ("chunk",), "str", "", ("sample",),
              "landmark region: why no face was found (empty when found)", "jacobians", per_sample=True,
              when="landmark_regions"),
    ArraySpec("gram_in", "regions/{region}/gram_in", ("n", "d", "d"), ("chunk", "d", "d"), "gram", np.nan,
              ("sample", "latent_i", "latent_j"), "M_R = J^T diag(R) J per sample (inside the region)",
              "jacobians", presence=True, per_sample=True),
    ArraySpec("gram_out", "regions/{region}/gram_out", ("n", "d", "d"), ("chunk", "d", "d"), "gram", np.nan,
              ("sample", "latent_i", "latent_j"), "M_B = J^T diag(1 - R) J per sample (outside the region)",
              "jacobians", presence=True, per_sample=True),
    # compute.jacobian: matfree (issue 17, lrgan_dist.core.matfree): top-k eigenpairs instead of Grams;
    # created by the jacobians stage's driver with k bound (k = min(compute.k, d))
    *(ArraySpec(f"matfree_basis_{side}", f"regions/{{region}}/basis_{side}", ("n", "k", "d"), ("chunk", "k", "d"),
                "f4", np.nan, ("sample", "eigenpair", "latent"),
                f"top-k eigenvectors (rows, eigenvalue descending) of M_{s} = J^T diag({w}) J / sum({w}), matrix-free",
                "jacobians", per_sample=True)
      for side, s, w in (("in", "R", "R"), ("out", "B", "1 - R"))),
    *(ArraySpec(f"matfree_eig_{side}", f"regions/{{region}}/eig_{side}", ("n", "k"), ("chunk", "k"), "f4", np.nan,
                ("sample", "eigenpair"), f"top-k eigenvalues (Ritz values) of M_{s}, descending", "jacobians",
                units="per-pixel energy", per_sample=True)
      for side, s in (("in", "R"), ("out", "B"))),
    *(ArraySpec(f"matfree_residual_{side}", f"regions/{{region}}/residual_{side}", ("n", "k"), ("chunk", "k"), "f4",
                np.nan, ("sample", "eigenpair"),
                f"certificate ||M_{s} u - theta u|| / theta_1 of each eigenpair", "jacobians", units="1",
                per_sample=True)
      for side, s in (("in", "R"), ("out", "B"))),
    *(ArraySpec(f"matfree_union_{side}", f"regions/{{region}}/union_{side}", ("n", "u", "u"), ("chunk", "u", "u"),
                "f4", np.nan, ("sample", "union_i", "union_j"),
                f"W M_{s} W^T with W = [basis_in; basis_out] (u = 2k): the compressed problem of LowRankGAN",
                "jacobians", per_sample=True)
      for side, s in (("in", "R"), ("out", "B"))),
)
_DIRECTIONS_TABLE: tuple[ArraySpec, ...] = (
    # r = the most direction rows per sample: d for Grams; min(2k, d) on matrix-free stores
    # (pipeline.stages.factorize.direction_rows), bound when the group is created
    ArraySpec("directions_vectors", "directions/{region}/{label}/vectors", ("n", "r", "d"), ("chunk", "r", "d"),
              "f4", np.nan, ("sample", "direction", "latent"), "unit directions per sample, best first, NaN-padded",
              "factorize", per_sample=True),
    ArraySpec("directions_rank", "directions/{region}/{label}/rank", ("n",), ("chunk",), "i4", -1, ("sample",),
              "number of directions found per sample (-1: not computed)", "factorize", presence=True,
              per_sample=True),
    ArraySpec("directions_spectrum", "directions/{region}/{label}/spectrum", ("n", "r"), ("chunk", "r"), "f4",
              np.nan, ("sample", "component"), "the method's spectrum per sample, descending", "factorize",
              per_sample=True),
    ArraySpec("directions_status", "directions/{region}/{label}/status", ("n",), ("chunk",), "u1", PENDING,
              ("sample",), "factorize status of each sample, written after its results", "factorize",
              flags=_STATUS, per_sample=True, status_of="sample"),
    ArraySpec("directions_span", "directions/{region}/{label}/diagnostics/span", ("n",), ("chunk",), "i4", -1,
              ("sample",), "dimension of the span of the sample's direction rows (rank counts the rows; LowRankGAN's "
              "projected rows can be dependent): the rank of the unit-row stack under the orthonormal-basis policy "
              "(singular values > 1e-6 of the largest; -1: not computed)", "factorize", per_sample=True),
    ArraySpec("directions_diagnostic", "directions/{region}/{label}/diagnostics/{name}", ("n", "*tail"),
              ("chunk", "*tail"), "given", "auto", ("sample", "*tail"),
              "the method's per-sample diagnostic (fill where not computed)", "factorize", per_sample=True),
)
_POPULATION_TABLE: tuple[ArraySpec, ...] = (
    ArraySpec("population_vectors", "population/{region}/{label}/vectors", ("k", "d"), ("k", "d"), "f4", 0.0,
              ("population_direction", "latent"), "population directions (rows, best first) from the mean Grams", "population"),
    ArraySpec("population_spectrum", "population/{region}/{label}/spectrum", ("m",), ("m",), "f4", 0.0,
              ("population_component",), "the method's spectrum on the mean Grams", "population"),
    ArraySpec("population_rank", "population/{region}/{label}/rank", (), (), "i4", 0, (),
              "number of population directions found", "population"),
    ArraySpec("population_gram_in", "population/{region}/{label}/gram_in", ("d", "d"), ("d", "d"), "f8", 0.0,
              ("latent_i", "latent_j"), "mean M_R over done samples (tree reduction, float64)", "population"),
    ArraySpec("population_gram_out", "population/{region}/{label}/gram_out", ("d", "d"), ("d", "d"), "f8", 0.0,
              ("latent_i", "latent_j"), "mean M_B over done samples (tree reduction, float64)", "population"),
    ArraySpec("consensus_vectors", "population/{region}/{label}/consensus/vectors", ("kc", "d"), ("kc", "d"), "f4",
              0.0, ("consensus_direction", "latent"), "top eigenvectors of the mean projector of carrying subspaces",
              "population"),
    ArraySpec("consensus_spectrum", "population/{region}/{label}/consensus/spectrum", ("mc",), ("mc",), "f4", 0.0,
              ("consensus_component",), "eigenvalues of the mean projector (1: a direction every sample contains)",
              "population", units="1"),
    # issue 15: sign of each per-sample direction that aligns it with its population match
    # (lrgan_dist.core.subspaces.align_signs); applied by lrgan_dist.store.aligned.read_directions
    ArraySpec("population_sign", "population/{region}/{label}/sign", ("n", "r"), ("chunk", "r"), "i1", 0,
              ("sample", "direction"), "sign s of each per-sample direction: s*v has a non-negative inner product "
              "with the population direction of smallest angle (0: direction not defined)", "population",
              flags=((-1, "flipped"), (0, "undefined"), (1, "kept")), per_sample=True),
)
_ENERGY = "per-pixel energy v^T M v / area"
_TRANSFER_TABLE: tuple[ArraySpec, ...] = (
    ArraySpec("linear_sources", "transfer/linear/sources", ("S",), ("S",), "i4", -1, ("source",),
              "source sample indices", "transfer"),
    ArraySpec("linear_status", "transfer/linear/status", ("n",), ("chunk",), "u1", PENDING, ("target",),
              "linearized scores status of each target, written last", "transfer", flags=_STATUS,
              per_sample=True, status_of="target"),
    *(ArraySpec(f"linear_target_{nm}", "transfer/linear/targets/{scored}/" + nm, ("n",), ("chunk",), "f4", np.nan,
                ("target",), desc, "transfer", units=u, per_sample=True)
      for nm, desc, u in (("area_in", "area of the target's region mask", "grid cell"),
                          ("area_out", "area outside the target's region mask", "grid cell"),
                          ("mean_energy", "(tr M_R + tr M_B) / d of the target (inert rule)", None))),
    ArraySpec("linear_vectors", "transfer/linear/{region}/{label}/vectors", ("S", "k", "d"), ("S", "k", "d"), "f4",
              np.nan, ("source", "scored_direction", "latent"), "the source directions scored", "transfer"),
    ArraySpec("linear_source_energy", "transfer/linear/{region}/{label}/source_energy", ("S", "k"), ("S", "k"),
              "f4", np.nan, ("source", "scored_direction"), "v^T M_R v at the source", "transfer"),
    ArraySpec("linear_source_share", "transfer/linear/{region}/{label}/source_share", ("S", "k"), ("S", "k"),
              "f4", np.nan, ("source", "scored_direction"), "source energy / the source's largest", "transfer", units="1"),
    ArraySpec("linear_carrying", "transfer/linear/{region}/{label}/carrying", ("S", "k"), ("S", "k"), "bool",
              False, ("source", "scored_direction"), "source share >= carry_frac", "transfer"),
    *(ArraySpec(f"linear_{nm}", "transfer/linear/{region}/{label}/on/{scored}/" + nm, ("S", "n", "k"),
                ("S", "chunk", "k"), "f4", np.nan, ("source", "target", "scored_direction"), desc, "transfer", units=u)
      for nm, desc, u in (("energy_in", f"{_ENERGY} inside the target's region", None),
                          ("energy_out", f"{_ENERGY} outside the target's region", None),
                          ("locality", "energy_in / (energy_in + energy_out)", "1"))),
    ArraySpec("realized_pairs", "transfer/realized/pairs", ("P", 2), ("P", 2), "i4", -1, ("pair", "end"),
              "(source, target) sample pairs rendered", "transfer"),
    ArraySpec("realized_strengths", "transfer/realized/strengths", ("A",), ("A",), "f4", np.nan, ("strength",),
              "edit strengths alpha", "transfer"),
    ArraySpec("realized_status", "transfer/realized/status", ("P",), ("chunk",), "u1", PENDING, ("pair",),
              "realized edits status of each pair, written last per chunk", "transfer", flags=_STATUS,
              status_of="pair"),
    *(ArraySpec(f"realized_{nm}", "transfer/realized/{region}/{label}/on/{scored}/" + nm, ("P", "k", "A", 2),
                ("chunk", "k", "A", 2), "f4", np.nan, ("pair", "scored_direction", "strength", "sign"), desc, "transfer")
      for nm, desc in (("energy_in", "masked MSE / alpha^2 inside the target's region, sign -, +"),
                       ("energy_out", "masked MSE / alpha^2 outside the target's region, sign -, +"))),
    ArraySpec("similarity_samples", "transfer/similarity/samples", ("M",), ("M",), "i4", -1,
              ("similarity_sample",), "sample indices compared", "transfer"),
    *(ArraySpec(f"similarity_{nm}", "transfer/similarity/{region}/{label}/" + nm, ("M", "M"), ("M", "M"), "f4",
                np.nan, ("sample_a", "sample_b"), desc, "transfer", units=u)
      for nm, desc, u in (("similarity", "sum of cos^2 of principal angles / max rank", "1"),
                          ("projection_distance", "projection distance between carrying subspaces", "1"),
                          ("max_angle", "largest principal angle", "degree"))),
    ArraySpec("similarity_rank", "transfer/similarity/{region}/{label}/rank", ("M",), ("M",), "i4", -1,
              ("similarity_sample",), "carrying subspace dimension", "transfer"),
    ArraySpec("similarity_order", "transfer/similarity/{region}/{label}/order", ("M",), ("M",), "i4", -1,
              ("position",), "average-linkage display order (positions)", "transfer"),
)

_PV = "previews/{region}/{label}/"
_PSK = ("preview_sample", "preview_direction")
#: pre-rendered edit frames (pipeline/stages/previews.py): S samples, K directions, A strengths
_PREVIEWS_TABLE: tuple[ArraySpec, ...] = (
    ArraySpec("previews_samples", _PV + "samples", ("S",), ("S",), "i4", -1, ("preview_sample",),
              "sample indices rendered", "previews"),
    ArraySpec("previews_directions", _PV + "directions", ("S", "K"), ("S", "K"), "i4", -1, _PSK,
              "direction index k (0 = best) of each rendered direction (-1: not defined)", "previews"),
    ArraySpec("previews_strengths", _PV + "strengths", ("A",), ("A",), "f4", np.nan, ("preview_strength",),
              "edit strengths as multiples of the matched edit size", "previews", units="1"),
    ArraySpec("previews_alpha", _PV + "alpha", ("S", "K"), ("S", "K"), "f4", np.nan, _PSK,
              "latent step of one matched edit size (strength 1): alpha = target / ||J v||", "previews",
              units="latent unit"),
    *(ArraySpec(f"previews_{nm}", _PV + nm, ("S", "K"), ("S", "K"), "f4", np.nan, _PSK, desc, "previews", units=u)
      for nm, desc, u in (("jnorm", "first-order image change ||J v|| per unit step (analysis grid)", None),
                          ("energy_in", "v^T M_R v: per-pixel change inside R per unit step^2", None),
                          ("energy_out", "v^T M_B v: per-pixel change outside R per unit step^2", None),
                          ("locality", "share of the first-order change inside R: area_in*energy_in / ||J v||^2", "1"),
                          ("delta_share", "share of the rendered |dG|^2 inside R at the largest strength", "1"),
                          ("delta_scale", "|dG| that delta value 255 stands for", "image range unit"))),
    ArraySpec("previews_frames", _PV + "frames", ("S", "K", "A", "ph", "pw", 3), (1, "K", "A", "ph", "pw", 3), "u1",
              0, (*_PSK, "preview_strength", "preview_row", "preview_col", "rgb"),
              "edited images x + strength * alpha * v, preview size", "previews", units="8-bit sRGB"),
    ArraySpec("previews_delta", _PV + "delta", ("S", "K", "ph", "pw"), (1, "K", "ph", "pw"), "u1", 0,
              (*_PSK, "preview_row", "preview_col"),
              "per-pixel |G(x + a v) - G(x)| at the largest strength, 255 = delta_scale", "previews"),
)
#: the previews' direction sets, in the order the report and the explorer show them: the
#: per-sample directions (previews/<region>/<label>/...), then the shared ones (subgroups)
PREVIEW_SOURCES: tuple[str, ...] = ("sample", "population", "consensus")
#: the same arrays for the population and the consensus directions of each (region, label),
#: rendered on the same samples (previews/<region>/<label>/population/..., .../consensus/...);
#: a population-only method (ganspace, sefa: population/_latent/<label>) has only the population
#: subgroup, one per region (its region-free directions scored against that region)
_PREVIEWS_TABLE += tuple(replace(r, kind=r.kind.replace("previews_", f"previews_{src}_"),
                                 path=r.path.replace(_PV, f"{_PV}{src}/"),
                                 description=f"{src} directions: {r.description}")
                         for src in PREVIEW_SOURCES[1:] for r in _PREVIEWS_TABLE)

#: kind → spec, every array of the layout.
TABLE: dict[str, ArraySpec] = {s.kind: s for s in (*_SAMPLE_TABLE, *_DIRECTIONS_TABLE, *_POPULATION_TABLE,
                                                   *_TRANSFER_TABLE, *_PREVIEWS_TABLE)}


def spec_for(path: str, layout: Layout | None = None) -> tuple[ArraySpec, dict[str, str]] | None:
    """The table row of a stored array path and its placeholder values, or None (not ours).

    ``regions/<r>/mask`` is the static or the per-sample row as the Layout says.
    """
    for spec in TABLE.values():
        m = spec.pattern.match(path)
        if m is None:
            continue
        names = m.groupdict()
        if spec.when in ("static_mask", "per_sample_mask") and layout is not None:
            per_sample = names["region"] in layout.per_sample_masks
            if per_sample != (spec.when == "per_sample_mask"):
                continue
        return spec, names
    return None


def _dtype(spec: ArraySpec, layout: Layout, given: str | None) -> Any:
    if spec.dtype == "gram":
        return np.dtype("f8" if layout.gram_dtype == "float64" else "f4")
    if spec.dtype == "given":
        if given is None:
            raise ValueError(f"{spec.kind}: the writer must give the dtype")
        return np.dtype(given)
    if spec.dtype == "str":
        return str
    return np.dtype(spec.dtype)


def geometry(path: str, layout: Layout, shape: tuple[int, ...] | None = None, *, dtype: str | None = None,
             tail: tuple[int, ...] = (), **symbols: int) -> Geometry:
    """Resolve the table row of ``path`` for this store.

    ``shape`` (optional) binds the row's free symbols and is checked against the Layout;
    ``tail`` gives the trailing axes of ``*tail`` rows; ``symbols`` binds free symbols by name.
    Raises ValueError naming the array, what was received and what the table expects.
    """
    found = spec_for(path, layout)
    if found is None:
        raise ValueError(f"{path}: not an array of the store layout; expected one of the paths of lrgan_dist.store.layout.TABLE")
    spec, _ = found
    env: dict[str, int] = {**layout.symbols(), **symbols}
    pattern = [x for d in spec.shape for x in (([f"*{i}" for i in range(len(tail))]) if d == "*tail" else [d])]
    for i, t in enumerate(tail):
        env[f"*{i}"] = int(t)
    if shape is not None:
        shape = tuple(int(x) for x in shape)
        if len(shape) != len(pattern):
            raise ValueError(f"{path}: received shape {list(shape)}; expected {len(pattern)} axes {list(spec.shape)}")
        for sym, got in zip(pattern, shape):
            want = sym if isinstance(sym, int) else env.setdefault(sym, got)
            if want != got:
                raise ValueError(f"{path}: received shape {list(shape)}; expected {list(spec.shape)} with "
                                 f"{sym} = {want}")

    def resolve(dims: tuple[Dim, ...]) -> tuple[int, ...]:
        out: list[int] = []
        for sym in dims:
            if sym == "*tail":
                out.extend(int(t) for t in tail)
            elif isinstance(sym, int):
                out.append(sym)
            elif sym in env:
                out.append(int(env[sym]))
            else:
                raise ValueError(f"{path}: symbol {sym!r} of {list(spec.shape)} is unbound; expected a shape or {sym}=")
        return tuple(out)

    shp = resolve(spec.shape)
    chunks = tuple(max(1, x) for x in resolve(spec.chunks))
    dt = _dtype(spec, layout, dtype)
    fill = diagnostic_fill(str(dt)) if spec.fill == "auto" else spec.fill
    name = path.rsplit("/", 1)[-1]
    dims = tuple(x for d in spec.dims for x in ([f"{name}_{i}" for i in range(len(tail))] if d == "*tail" else [d]))
    return Geometry(spec=spec, path=path, shape=shp, chunks=chunks, dtype=dt, fill=fill,
                    dims=dims if dims else None, attributes=spec.attributes())


#: numpy dtype → zarr v3 ``data_type`` name in zarr.json
V3_DTYPE = {"f2": "float16", "f4": "float32", "f8": "float64", "u1": "uint8", "i4": "int32", "i8": "int64",
            "b1": "bool", "u2": "uint16", "u4": "uint32", "i2": "int16", "i1": "int8", "u8": "uint64"}


def fill_equal(stored: Any, expected: Any) -> bool:
    """Whether a zarr.json ``fill_value`` equals the table's (NaN-aware, "NaN" strings)."""
    if isinstance(stored, str) and stored in ("NaN", "Infinity", "-Infinity"):
        stored = float(stored.replace("Infinity", "inf"))
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(stored, float) and math.isnan(stored)
    if isinstance(stored, float) and math.isnan(stored):
        return False
    if isinstance(expected, bool) or isinstance(stored, bool):
        return bool(stored) == bool(expected) and type(stored) is bool
    if isinstance(expected, str):
        return stored == expected
    try:
        return float(stored) == float(expected)
    except (TypeError, ValueError):
        return False
