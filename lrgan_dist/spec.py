"""Job specification: YAML → frozen, typed, validated, resolved and fingerprinted.

A job spec is parsed once, at the edge (CLI or API), into :class:`JobSpec`; everything
downstream receives typed frozen dataclasses and never sees raw YAML. Every error is a
:class:`SpecError` naming the field (``regions.eyes.box``), what was received and what
was expected; unknown keys get a did-you-mean suggestion.

Sections (see README "Job spec reference" for every key and default)::

    name:      free text
    generator: {kind, params}                    registry key + adapter parameters
    latent:    {space, layers, truncation}       forwarded to adapters that take them
    samples:   {count, seed | latents, space | seeds}   latent i from (seed, i), row i of a
                                                 .npy file, or NVIDIA seed i (see SamplesSpec)
    grid:      {resolution, channels}            analysis grid h = w = resolution
    regions:   {NAME: {box | mask | preset | part | landmarks, units, labels, dilate}}
    methods:   {LABEL: {method, samples, ...params}}   LABEL defaults to the method name;
                                                 samples: factorize the first N only
    compute:   {actors, batch_size, gpus_per_actor, torch_threads, jvp_chunk,
                keep_jacobians, gram_dtype}
    store:     {uri, chunk_samples}
    transfer:  {sources, targets, ...}           cross-image study (transfer stage)
    previews:  {samples, directions, strengths, size}   pre-rendered edit frames (previews stage)

The **data fingerprint** is a stable SHA-256 of the resolved sections that decide the
per-sample data (generator, latent, samples, grid, regions, store layout, kept
Jacobians, Gram dtype). Methods and transfer settings are excluded on purpose: each
result group carries its own parameter hash, so a store can be re-factorized with
new method parameters without recomputing Jacobians.
"""
from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import math
import os
import re
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from lrgan_dist.core.digest import file_sha256, json_sha256
from lrgan_dist.regions import RegionError, RegionSpec

__all__ = [
    "SpecError",
    "SpecErrors",
    "JobSpec",
    "GeneratorSpec",
    "LatentSpec",
    "SamplesSpec",
    "GridSpec",
    "RegionSpec",
    "MethodSpec",
    "ComputeSpec",
    "StoreSpec",
    "TransferSpec",
    "load_spec",
    "parse_spec",
]


class SpecError(ValueError):
    """Invalid job spec; the message names the field, the value and what is expected."""

    def __init__(self, field_path: str, message: str, source: str | None = None):
        self.field = field_path
        self._init = (field_path, message, source)
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{field_path}: {message}" if field_path else f"{prefix}{message}")

    def __reduce__(self) -> Any:  # picklable, so an error raised in a Ray worker reaches the CLI intact
        return (type(self), self._init)


class SpecErrors(SpecError):
    """Several invalid fields, all reported at once (one line each); ``errors`` holds them."""

    def __init__(self, errors: list[SpecError], source: str | None = None):
        self.errors = list(errors)
        self._init = (self.errors, source)  # type: ignore[assignment]
        first = self.errors[0]
        self.field = first.field
        prefix = f"{source}: " if source else ""
        lines = [f"{prefix}{len(self.errors)} errors in the job spec:" if len(self.errors) > 1 else ""]
        lines += [("  " if len(self.errors) > 1 else prefix) + str(e) for e in self.errors]
        ValueError.__init__(self, "\n".join(line for line in lines if line))


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class GeneratorSpec:
    kind: str = "synthetic"
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LatentSpec:
    space: str | None = None  # adapter default when None (synthetic: its only space)
    layers: tuple[int, ...] | Literal["all"] | None = None  # "all": W+ with one w per slot (stylegan2)
    truncation: float | None = None


@dataclass(frozen=True)
class SamplesSpec:
    """Which latents are analysed: drawn from ``(seed, i)`` (default), a file, or NVIDIA seeds.

    ``latents`` -- a ``.npy`` file [N, d] of the user's own latents in ``space`` (``z``, ``w``
    or ``wplus``; default: the generator's analysed space); ``count`` comes from the file.
    ``seeds`` -- NVIDIA's convention: ``z = np.random.RandomState(seed).randn(z_dim)`` per
    seed (mapped to the analysed space like any z); ``count`` = ``len(seeds)``. The file is
    identified by content: ``latents_sha256`` is computed when the spec is read (stored
    specs carry it so that a store read elsewhere keeps its fingerprint without the file).
    """

    count: int = 64
    seed: int = 0
    latents: str | None = None  # absolute path once parsed
    space: Literal["z", "w", "wplus"] | None = None
    seeds: tuple[int, ...] | None = None
    latents_sha256: str | None = None  # set by the parser; never by hand


@dataclass(frozen=True)
class GridSpec:
    resolution: int | None = None  # None → min(H, 256)
    channels: Literal["mean", "sum", "rgb"] = "mean"


@dataclass(frozen=True)
class MethodSpec:
    label: str
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    # per-sample methods: factorize only samples 0 … samples − 1 (e.g. a λ sweep on a subset of
    # a large job); None = every sample. Not a method parameter: not in the parameter hash.
    samples: int | None = None

    def sample_limit(self, count: int) -> int:
        """How many samples (the first ones) this method factorizes in a job of ``count``."""
        return count if self.samples is None else min(self.samples, count)


@dataclass(frozen=True)
class ComputeSpec:
    actors: int | None = None  # None → number of GPUs, else CPUs available to Ray
    batch_size: int | None = None  # samples per forward pass; None → chunk_samples
    gpus_per_actor: float | None = None  # None → 1 when the cluster has GPUs, else 0
    cpus_per_actor: float = 1.0
    torch_threads: int | None = None  # None → cpus_per_actor
    jvp_chunk: int = 16  # latent directions per batched JVP
    keep_jacobians: bool = False
    gram_dtype: Literal["float32", "float64"] = "float32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    factorize_device: Literal["auto", "cpu", "cuda"] = "auto"
    max_retries: int = 3
    # issue 17: "dense" forms J and the [d, d] Grams; "matfree" stores the top-k eigenpairs of
    # M_R, M_B per region from JVP/VJP products (lrgan_dist.core.matfree), for large d
    jacobian: Literal["dense", "matfree"] = "dense"
    k: int = 32  # matfree: eigenpairs per region and side
    oversample: int = 8  # matfree: extra block columns
    matfree_tol: float = 1e-4  # matfree certificate: max ||M u - theta u|| / theta_1
    matfree_blocks: int = 12  # matfree: most operator block applications


@dataclass(frozen=True)
class StoreSpec:
    uri: str = "runs/lrgan.zarr"
    chunk_samples: int = 16


@dataclass(frozen=True)
class TransferSpec:
    sources: tuple[int, ...] | int = 4  # int K → first K done samples; list → indices
    targets: tuple[int, ...] | None = None  # None → all done samples
    directions: int = 8  # max directions per (source, region, method)
    realized_pairs: int = 64  # (source, target) pairs rendered with the generator
    strengths: tuple[float, ...] = (0.5,)  # α of the realized edits x_j ± α·v (latent units)
    similarity_samples: int | tuple[int, ...] = 32  # int M → first M done samples; list → indices
    seed: int = 0  # realized-pair sampling
    regions: tuple[str, ...] | None = None  # regions whose directions are studied; None → all
    methods: tuple[str, ...] | None = None  # method labels studied; None → all per-sample methods
    score_on: dict[str, Any] = field(default_factory=dict)  # region → region(s) scoring it; default itself
    carry_frac: float = 0.01  # carrying: ≥ carry_frac of the source's largest region energy
    realized_dtype: Literal["float32", "float64"] = "float32"  # generator precision of realized edits


@dataclass(frozen=True)
class PreviewsSpec:
    """Pre-rendered edit frames for the report and the explorer (previews stage)."""

    samples: int = 4  # samples per result group, spread evenly over the done samples
    directions: int = 3  # top directions per (sample, region, method)
    strengths: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)  # multiples of the matched edit size
    size: float = 1.0  # matched edit size: ‖J v‖·|α| = size · median ‖J u‖ of a random unit u


@dataclass(frozen=True)
class JobSpec:
    name: str
    generator: GeneratorSpec
    latent: LatentSpec
    samples: SamplesSpec
    grid: GridSpec
    regions: tuple[RegionSpec, ...]
    methods: tuple[MethodSpec, ...]
    compute: ComputeSpec
    store: StoreSpec
    transfer: TransferSpec
    previews: PreviewsSpec = field(default_factory=PreviewsSpec)
    base_dir: str = "."  # directory of the spec file; relative paths resolve against it
    work_dir: str | None = None  # the driver's working directory when the spec file was read (not fingerprinted)

    # ----------------------------------------------------------------- derived
    def to_dict(self) -> dict[str, Any]:
        """The resolved spec as plain JSON-able data (saved with every store)."""
        d = _plain(dataclasses.asdict(self))
        d["regions"] = {r.pop("name"): {k: v for k, v in r.items() if v is not None} for r in d["regions"]}
        d["methods"] = {m["label"]: {"method": m["method"], **m["params"],
                                     **({"samples": m["samples"]} if m["samples"] is not None else {})}
                        for m in d["methods"]}
        d.pop("base_dir")
        d.pop("work_dir")
        d["samples"] = {k: v for k, v in d["samples"].items() if v is not None}  # old specs read the same
        return d

    def data_fingerprint(self) -> str:
        d = self.to_dict()
        keep = {k: d[k] for k in ("generator", "latent", "samples", "grid", "regions")}
        keep["samples"].pop("latents", None)  # a latent file is identified by content (latents_sha256)
        keep["store"] = {"chunk_samples": d["store"]["chunk_samples"]}
        keep["compute"] = {k: d["compute"][k] for k in ("keep_jacobians", "gram_dtype")}
        if d["compute"]["jacobian"] != "dense":  # dense stores keep their fingerprint
            keep["compute"].update({k: d["compute"][k] for k in ("jacobian", "k", "oversample", "matfree_tol",
                                                                 "matfree_blocks")})
        # Region mask files are identified by content, not by path.
        for name, r in keep["regions"].items():
            if "mask" in r:
                p = self.resolve_path(r["mask"])
                if p.exists():  # a FIFO or /dev/zero would be hashed forever
                    regular_file(p, "mask file", f"regions.{name}.mask")
                r = dict(r, mask_sha256=file_sha256(p) if p.exists() else None)
                r.pop("mask")
                keep["regions"][name] = r
        return json_sha256(keep)

    def generator_params(self) -> dict[str, Any]:
        """``generator.params`` for building the generator on any node: a relative local
        ``checkpoint`` made absolute -- beside the spec when it is there, else against the
        directory the command ran in (``work_dir``, captured on the driver by :func:`load_spec`;
        the current directory for a spec without it) -- so a worker started in another working
        directory reads the same file.  The spec itself (``to_dict``, the fingerprint, the
        stored spec) keeps the path as written."""
        params = dict(self.generator.params)
        ckpt = params.get("checkpoint")
        if isinstance(ckpt, str) and ckpt and not _URL.match(ckpt) and not Path(ckpt).expanduser().is_absolute():
            beside = self.resolve_path(ckpt)
            params["checkpoint"] = str(beside) if beside.exists() else os.path.abspath(
                os.path.join(self.work_dir or os.getcwd(), ckpt))
        return params

    def resolve_path(self, p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() else Path(self.base_dir) / path

    def region(self, name: str) -> RegionSpec:
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(name)

    def resolve_region(self, r: RegionSpec) -> RegionSpec:
        """``r`` with its mask file resolved against the spec's folder (for rasterising)."""
        return r if r.mask is None else dataclasses.replace(r, mask=str(self.resolve_path(r.mask)))

    def replace(self, **sections: Any) -> "JobSpec":
        return dataclasses.replace(self, **sections)

    def with_overrides(
        self, *, store: str | None = None, samples: int | None = None, actors: int | None = None
    ) -> "JobSpec":
        """CLI overrides, validated like the YAML fields they replace."""
        spec = self
        if store is not None:
            _check_store_uri(store, "--store")
            spec = spec.replace(store=dataclasses.replace(spec.store, uri=store))
        if samples is not None:
            if not 1 <= samples <= MAX_SAMPLES:
                raise SpecError("--samples", f"received {samples}; expected an integer in [1, {MAX_SAMPLES}]")
            own = spec.samples.latents is not None or spec.samples.seeds is not None
            if own and samples > spec.samples.count:
                raise SpecError("--samples", f"received {samples} but samples.{'latents' if spec.samples.latents else 'seeds'} "
                                f"gives {spec.samples.count}; expected at most {spec.samples.count} (the first N are used)")
            if spec.samples.seeds is not None:
                spec = spec.replace(samples=dataclasses.replace(spec.samples, seeds=spec.samples.seeds[:samples]))
            spec = spec.replace(samples=dataclasses.replace(spec.samples, count=samples))
        if actors is not None:
            if actors < 1:
                raise SpecError("--actors", f"received {actors}; expected an integer >= 1")
            spec = spec.replace(compute=dataclasses.replace(spec.compute, actors=actors))
        _check_consistency(spec)
        return spec


# --------------------------------------------------------------------------- parsing


#: limits on what a job spec may make us read or build (issue 14: unbounded inputs)
MAX_SPEC_BYTES = 1 << 20
MAX_YAML_ALIASES = 64
MAX_SAMPLES = 10_000_000


def regular_file(path: Path, what: str, field: str = "") -> os.stat_result:
    """``path``'s stat after checking it is a regular file (not a FIFO, device or directory)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise SpecError(field, f"{what} {str(path)!r} cannot be read ({exc.strerror}); expected a regular file") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise SpecError(field, f"{what} {str(path)!r} is {kind}; expected a regular file")
    return st


def read_text_file(path: Path, limit: int, what: str) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes."""
    st = regular_file(path, what)
    if st.st_size > limit:
        raise SpecError("", f"{what} {str(path)!r} is larger than {limit} bytes ({st.st_size}); expected a small "
                            "YAML text file")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise SpecError("", f"{what} {str(path)!r} is larger than {limit} bytes; expected a small YAML text file")
    if b"\x00" in data:
        raise SpecError("", f"{what} {str(path)!r} holds NUL bytes (a binary file?); expected a UTF-8 YAML text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError("", f"{what} {str(path)!r} is not UTF-8 (byte {exc.start}); expected a UTF-8 YAML text "
                            "file") from None


class _BoundedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses more than MAX_YAML_ALIASES aliases (an alias bomb
    expands 10⁹-fold when the spec is serialised for its fingerprint)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_YAML_ALIASES:
                mark = self.peek_event().start_mark
                raise SpecError("", f"more than {MAX_YAML_ALIASES} YAML aliases (*name) at line {mark.line + 1}; "
                                    "expected a job spec without an alias bomb")
        return super().compose_node(parent, index)


def load_spec(path: str | Path) -> JobSpec:
    """Read, parse and validate a YAML job spec file."""
    path = Path(path)
    if not path.exists():
        raise SpecError("", f"job spec file {str(path)!r} does not exist; expected a YAML file")
    if path.is_dir():
        raise SpecError("", f"job spec {str(path)!r} is a directory; expected a YAML file")
    text = read_text_file(path, MAX_SPEC_BYTES, "job spec")
    try:
        raw = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506  (a SafeLoader that bounds aliases)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise SpecError("", f"malformed YAML at {where}: {exc.problem}", source=str(path)) from None
    except yaml.YAMLError as exc:
        raise SpecError("", f"malformed YAML: {exc}", source=str(path)) from None
    try:
        spec = parse_spec(raw, base_dir=str(path.resolve().parent))
    except SpecErrors as exc:
        raise SpecErrors(exc.errors, source=str(path)) from None
    except SpecError as exc:
        raise SpecError(exc.field, str(exc)[len(exc.field) + 2 :] if exc.field else str(exc), source=str(path)) from None
    check_region_runtime(spec)
    return dataclasses.replace(spec, work_dir=os.getcwd())


def check_region_runtime(spec: JobSpec) -> None:
    """A user's job that asks for landmark regions needs MediaPipe Face Mesh importable
    (the optional extra ``faces``): raise :class:`lrgan_dist.landmarks.LandmarkError`
    (CLI exit 2) naming the region and the install command.  Only for job files: a spec
    read back from a store is never checked (reading a store needs no detector)."""
    lm = [r.name for r in spec.regions if r.landmarks is not None]
    if not lm:
        return
    from lrgan_dist.landmarks import LandmarkError, _import_face_mesh

    try:
        _import_face_mesh()
    except LandmarkError as exc:
        raise LandmarkError(f"regions.{lm[0]}.landmarks: {exc}") from None


_FRACTION = re.compile(r"\s*\d+(\.\d*)?\s*/\s*\d+(\.\d*)?\s*")
_TOP = ("name", "generator", "latent", "samples", "grid", "regions", "methods", "compute", "store", "transfer", "previews")
_DEFAULT_METHODS: dict[str, dict[str, Any]] = {"lowrankgan": {}, "resefa": {}, "jacobian_svd": {}}


def parse_spec(raw: Any, base_dir: str = ".") -> JobSpec:
    """Validate a parsed YAML mapping and fill in defaults."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SpecError("", f"received a {type(raw).__name__}; expected a mapping of sections {list(_TOP)}")
    errors: list[SpecError] = []

    def collect(fn: Any, default: Any = None) -> Any:
        """Run one section's validation; keep its error and go on (all errors are reported at once)."""
        try:
            return fn()
        except SpecError as exc:
            errors.append(exc)
            return default

    collect(lambda: _check_keys(raw, _TOP, ""))
    generator = collect(lambda: _parse_generator(raw), GeneratorSpec())
    latent = collect(lambda: _parse_dataclass(LatentSpec, _section(raw, "latent"), "latent"), LatentSpec())
    samples = collect(lambda: _parse_samples(_section(raw, "samples"), base_dir), SamplesSpec())
    grid = collect(lambda: _parse_grid(raw), GridSpec())
    regions = collect(lambda: _parse_regions(raw, collect), ())
    methods = collect(lambda: _parse_methods(raw, collect), ())
    compute = collect(lambda: _parse_compute(raw), ComputeSpec())
    store = collect(lambda: _parse_store(raw), StoreSpec())
    transfer = collect(lambda: _parse_dataclass(TransferSpec, _section(raw, "transfer"), "transfer"), TransferSpec())
    previews = collect(lambda: _parse_previews(raw), PreviewsSpec())
    name = raw.get("name", "lrgan-job")
    if not isinstance(name, str):
        errors.append(SpecError("name", f"received {name!r}; expected a string"))
    for r in regions or ():
        collect(lambda r=r: _check_part(generator, r))
    if errors:
        raise SpecErrors(errors)
    spec = JobSpec(
        name=name,
        generator=generator,
        latent=latent,
        samples=samples,
        grid=grid,
        regions=regions,
        methods=methods,
        compute=compute,
        store=store,
        transfer=transfer,
        previews=previews,
        base_dir=base_dir,
    )
    _check_consistency(spec)
    return spec


def _check_part(generator: GeneratorSpec, r: RegionSpec) -> None:
    """``part`` regions need a generator whose registry entry names parts with masks."""
    if r.part is None:
        return
    from lrgan_dist.generators.base import mask_parts

    where = f"regions.{r.name}.part"
    parts = mask_parts(generator.kind, generator.params)
    if parts is None:  # user code: its part masks are checked once it is built
        return
    local = list(parts)
    if not local:
        raise SpecError(where, f"received part {r.part!r}, but generator {generator.kind!r} has no ground-truth part "
                        "masks; expected a box, mask, preset or landmarks region")
    if r.part not in local:
        from lrgan_dist.generators.synthetic import SyntheticFaces

        glob = generator.kind == "synthetic" and r.part in SyntheticFaces.PARTS
        why = " (a global part: it has no mask)" if glob else _suggest(r.part, local)
        raise SpecError(where, f"received {r.part!r}{why}; expected a part with a mask, one of {local}")


def _parse_generator(raw: Mapping[str, Any]) -> GeneratorSpec:
    gen_raw = _section(raw, "generator")
    _check_keys(gen_raw, ("kind", "params"), "generator")
    kind = gen_raw.get("kind", "synthetic")
    if not isinstance(kind, str):
        raise SpecError("generator.kind", f"received {kind!r}; expected a generator name")
    from lrgan_dist.generators.base import available

    kinds = available()
    if kind not in kinds:
        raise SpecError("generator.kind", f"unknown generator {kind!r}{_suggest(kind, kinds)}; expected one of {kinds}")
    params = gen_raw.get("params", {}) or {}
    if not isinstance(params, Mapping):
        raise SpecError("generator.params", f"received {params!r}; expected a mapping")
    generator = GeneratorSpec(kind=kind, params=_freeze(dict(params)))
    _check_checkpoint_not_url(generator.params)
    from lrgan_dist.generators.base import GeneratorError, check_params

    try:  # the kind's own cheap check: sizes, names, ranges (nothing is built or read)
        check_params(kind, dict(params))
    except GeneratorError as exc:
        msg = str(exc)
        field, sep, rest = msg.partition(": ")
        if sep and field.startswith("generator."):
            raise SpecError(field, rest) from None
        raise SpecError("generator.params", msg) from None
    return generator


def _parse_grid(raw: Mapping[str, Any]) -> GridSpec:
    grid = _parse_dataclass(GridSpec, _section(raw, "grid"), "grid")
    if grid.resolution is not None:
        _require(grid.resolution >= 1, "grid.resolution", grid.resolution, "an integer >= 1 (or null for min(H, 256))")
    return grid


def _parse_regions(raw: Mapping[str, Any], collect: Any) -> tuple[RegionSpec, ...]:
    regions_raw = raw.get("regions")
    if not regions_raw:
        raise SpecError("regions", f"received {regions_raw!r}; expected at least one region, e.g. {{eyes: {{box: [0.3, 0.2, 0.5, 0.8]}}}}")
    if not isinstance(regions_raw, Mapping):
        raise SpecError("regions", f"received a {type(regions_raw).__name__}; expected a mapping NAME -> region")
    regions = [collect(lambda n=n, r=r: _parse_region(str(n), r)) for n, r in regions_raw.items()]
    return tuple(r for r in regions if r is not None)


def _parse_methods(raw: Mapping[str, Any], collect: Any) -> tuple[MethodSpec, ...]:
    methods_raw = raw.get("methods", _DEFAULT_METHODS)
    if methods_raw is None:
        methods_raw = _DEFAULT_METHODS
    if not isinstance(methods_raw, Mapping) or not methods_raw:
        raise SpecError("methods", f"received {methods_raw!r}; expected a mapping LABEL -> parameters")
    methods: list[MethodSpec] = []
    origin: dict[str, str] = {}  # label → the field that defined it
    for label, m in methods_raw.items():
        for new_label, sub, where in collect(lambda label=label, m=m: _expand_grid(str(label), m), ()):
            spec = collect(lambda e=(new_label, sub, where): _parse_method(*e))
            if spec is None:
                break  # an error common to the whole grid is reported once
            if spec.label in origin:
                collect(lambda lab=spec.label, w=where: _raise(SpecError(
                    w, f"gives the label {lab!r}, which {origin[lab]} also gives; expected distinct labels "
                       f"(a grid's labels are LABEL_PARAMVALUE, e.g. lowrankgan_lam0.1)")))
                continue
            origin[spec.label] = where
            methods.append(spec)
    return tuple(methods)


def _raise(exc: Exception) -> None:
    raise exc


def _grid_suffix(value: Any) -> str:
    """The label suffix of one grid value: Python's shortest round-trip repr for numbers
    (``0.03``, ``1e-05``), ``true``/``false``/``null`` as YAML writes them, strings as given."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return repr(value) if isinstance(value, (int, float)) else str(value)


def _expand_grid(label: str, raw: Any) -> list[tuple[str, Any, str]]:
    """A method entry with lists for scalar parameters → one entry per grid point.

    ``lowrankgan: {lam: [0.03, 0.1], tol: 1e-6}`` gives ``lowrankgan_lam0.03: {method:
    lowrankgan, lam: 0.03, tol: 1e-6}`` and ``lowrankgan_lam0.1: {...}``: the same labels,
    parameters and parameter hashes as writing the entries by hand (a λ study of PCP's
    sparsity weight in ``min ‖L‖_* + λ‖S‖₁``, Zhu et al. 2021 eq. 3).  Several grid
    parameters expand to their product, suffixes in the spec's key order
    (``_lam0.1_relax1``).  Which parameters take a grid: :func:`grid_params` (those with
    one scalar value; a list for ``sefa.layers`` is its value).  Returns (label, raw
    parameters, field) triples; each element is checked alone so that an error names it
    (``methods.lowrankgan.lam[1]``).
    """
    where = f"methods.{label}"
    if not isinstance(raw, Mapping) or not any(isinstance(v, list) for v in raw.values()):
        return [(label, raw, where)]  # not a grid; _parse_method checks everything else
    from lrgan_dist.core.methods import available_methods, get_method
    from lrgan_dist.core.methods.registry import grid_params

    name = raw.get("method", label)
    if name not in available_methods():
        return [(label, raw, where)]
    scalar = grid_params(name)
    grid: dict[str, list[Any]] = {}
    for key, vals in raw.items():
        if not isinstance(vals, list) or key not in scalar:
            continue
        if not vals:
            raise SpecError(f"{where}.{key}", "received an empty list; expected a value or a non-empty list of values "
                                              "(a grid: one result group per value)")
        grid[key] = []
        for i, v in enumerate(vals):
            f = f"{where}.{key}[{i}]"
            if isinstance(v, str) and _FRACTION.fullmatch(v):
                v = _parse_fraction(v, f)
            if isinstance(v, (list, Mapping)):
                raise SpecError(f, f"received {v!r}; expected one value of {key} (the list is a grid of values)")
            try:
                get_method(name, **{key: v})
            except (TypeError, ValueError) as exc:
                raise SpecError(f, str(exc)) from None
            if any(_grid_suffix(u) == _grid_suffix(v) for u in grid[key]):
                raise SpecError(f, f"received {v!r} twice; expected distinct values (one result group each)")
            grid[key].append(v)
    if not grid:
        return [(label, raw, where)]
    out = []
    for combo in itertools.product(*grid.values()):
        sub = {"method": name, **raw, **dict(zip(grid, combo))}
        out.append((label + "".join(f"_{k}{_grid_suffix(v)}" for k, v in zip(grid, combo)), sub, where))
    return out


def _parse_compute(raw: Mapping[str, Any]) -> ComputeSpec:
    compute = _parse_dataclass(ComputeSpec, _section(raw, "compute"), "compute")
    for f in ("actors", "batch_size", "torch_threads"):
        v = getattr(compute, f)
        if v is not None:
            _require(v >= 1, f"compute.{f}", v, "an integer >= 1 (or null for automatic)")
    _require(compute.jvp_chunk >= 1, "compute.jvp_chunk", compute.jvp_chunk, "an integer >= 1")
    _require(compute.cpus_per_actor > 0, "compute.cpus_per_actor", compute.cpus_per_actor, "a number > 0")
    if compute.gpus_per_actor is not None:
        _require(compute.gpus_per_actor >= 0, "compute.gpus_per_actor", compute.gpus_per_actor, "a number >= 0")
    _require(compute.max_retries >= 0, "compute.max_retries", compute.max_retries, "an integer >= 0")
    _require(compute.k >= 1, "compute.k", compute.k, "an integer >= 1")
    _require(compute.oversample >= 0, "compute.oversample", compute.oversample, "an integer >= 0")
    _require(compute.matfree_tol > 0, "compute.matfree_tol", compute.matfree_tol, "a number > 0")
    _require(compute.matfree_blocks >= 1, "compute.matfree_blocks", compute.matfree_blocks, "an integer >= 1")
    if compute.jacobian == "matfree":
        _require(not compute.keep_jacobians, "compute.keep_jacobians", compute.keep_jacobians,
                 "false with compute.jacobian: matfree (J is never formed)")
    return compute


def _parse_store(raw: Mapping[str, Any]) -> StoreSpec:
    store = _parse_dataclass(StoreSpec, _section(raw, "store"), "store")
    _require(store.chunk_samples >= 1, "store.chunk_samples", store.chunk_samples, "an integer >= 1")
    _require(bool(store.uri), "store.uri", store.uri, "a directory path or s3:// URI")
    _check_store_uri(store.uri, "store.uri")
    return store


#: URI schemes a store may use: local paths (no scheme, file://) and object stores through fsspec
STORE_SCHEMES = ("file", "s3", "gs", "gcs", "az", "abfs", "memory")


def _check_store_uri(uri: str, field: str) -> None:
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return
    if scheme not in STORE_SCHEMES or not rest.strip("/"):
        raise SpecError(field, f"received {uri!r}; expected a directory path or a URI with one of the schemes "
                               f"{[f'{s}://' for s in STORE_SCHEMES]} and a path")


def _parse_previews(raw: Mapping[str, Any]) -> PreviewsSpec:
    previews = _parse_dataclass(PreviewsSpec, _section(raw, "previews"), "previews")
    _require(1 <= previews.samples <= 64, "previews.samples", previews.samples, "an integer in [1, 64]")
    _require(1 <= previews.directions <= 16, "previews.directions", previews.directions, "an integer in [1, 16]")
    _require(1 <= len(previews.strengths) <= 16 and all(math.isfinite(a) for a in previews.strengths),
             "previews.strengths", list(previews.strengths), "1 to 16 finite multiples of the matched edit size")
    _require(math.isfinite(previews.size) and previews.size > 0, "previews.size", previews.size, "a number > 0")

    return previews


def _check_matfree(spec: JobSpec) -> None:
    """compute.jacobian: matfree stores top-k eigenpairs, not Grams: only the methods that run
    on the compressed problem (lrgan_dist.core.matfree.COMPRESSED_METHODS) are allowed."""
    if spec.compute.jacobian != "matfree":
        return
    from lrgan_dist.core.matfree import COMPRESSED_METHODS

    for m in spec.methods:
        if m.method not in COMPRESSED_METHODS:
            raise SpecError(f"methods.{m.label}", f"received method {m.method!r} with compute.jacobian: matfree; "
                            f"expected one of {list(COMPRESSED_METHODS)} (the others need dense Grams)")


def _check_consistency(spec: JobSpec) -> None:
    _check_matfree(spec)
    t = spec.transfer
    n = spec.samples.count
    if isinstance(t.sources, int):
        _require(t.sources >= 1, "transfer.sources", t.sources, "an integer >= 1 or a list of sample indices")
        if t.sources > n:
            raise SpecError("transfer.sources", f"received {t.sources} sources but samples.count is {n}; expected at most {n}")
    else:
        bad = [i for i in t.sources if not 0 <= i < n]
        if bad:
            raise SpecError("transfer.sources", f"received indices {bad}; expected sample indices in [0, {n})")
    if t.targets is not None:
        bad = [i for i in t.targets if not 0 <= i < n]
        if bad:
            raise SpecError("transfer.targets", f"received indices {bad}; expected sample indices in [0, {n})")
    _require(t.directions >= 1, "transfer.directions", t.directions, "an integer >= 1")
    _require(t.realized_pairs >= 0, "transfer.realized_pairs", t.realized_pairs, "an integer >= 0")
    if isinstance(t.similarity_samples, int):
        _require(t.similarity_samples >= 2, "transfer.similarity_samples", t.similarity_samples,
                 "an integer >= 2 or a list of at least 2 sample indices")
    else:
        bad = [i for i in t.similarity_samples if not 0 <= i < n]
        if bad or len(set(t.similarity_samples)) < 2:
            raise SpecError("transfer.similarity_samples", f"received {list(t.similarity_samples)}; "
                            f"expected at least 2 distinct sample indices in [0, {n})")
    for a in t.strengths:
        _require(a != 0, "transfer.strengths", list(t.strengths), "non-zero edit strengths α")
    _require(0 < t.carry_frac <= 1, "transfer.carry_frac", t.carry_frac, "a number in (0, 1]")
    region_names = [r.name for r in spec.regions]
    for r in t.regions or ():
        if r not in region_names:
            raise SpecError("transfer.regions", f"unknown region {r!r}{_suggest(r, region_names)}; "
                            f"expected names from regions: {region_names}")
    labels = [m.label for m in spec.methods]
    for m in t.methods or ():
        if m not in labels:
            raise SpecError("transfer.methods", f"unknown method label {m!r}{_suggest(m, labels)}; "
                            f"expected labels from methods: {labels}")
    if not isinstance(t.score_on, Mapping):
        raise SpecError("transfer.score_on", f"received {t.score_on!r}; expected a mapping REGION -> region or list of regions")
    for key, val in t.score_on.items():
        where = f"transfer.score_on.{key}"
        if key not in region_names:
            raise SpecError(where, f"unknown region {key!r}{_suggest(str(key), region_names)}; expected names from regions: {region_names}")
        vals = [val] if isinstance(val, str) else val
        if not isinstance(vals, (list, tuple)) or not vals or not all(isinstance(v, str) for v in vals):
            raise SpecError(where, f"received {val!r}; expected a region name or a non-empty list of region names")
        for v in vals:
            if v not in region_names:
                raise SpecError(where, f"unknown region {v!r}{_suggest(v, region_names)}; expected names from regions: {region_names}")
    if spec.compute.batch_size is not None and spec.compute.batch_size > spec.store.chunk_samples:
        raise SpecError(
            "compute.batch_size",
            f"received {spec.compute.batch_size} but store.chunk_samples is {spec.store.chunk_samples}; "
            "expected batch_size <= chunk_samples (a work unit is one chunk)",
        )


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_FETCH_HINT = {
    "hf": "huggingface-cli download REPO FILE --local-dir checkpoints/ (or hf_hub_download in Python)",
    "http": "curl -L -o checkpoints/model.pkl 'URL' (or wget)",
    "https": "curl -L -o checkpoints/model.pkl 'URL' (or wget)",
    "s3": "aws s3 cp 'URL' checkpoints/",
    "gs": "gsutil cp 'URL' checkpoints/",
}


def _check_checkpoint_not_url(params: Mapping[str, Any]) -> None:
    """Checkpoints are local files: a URL is refused with how to fetch it (never a silent download)."""
    for key in ("checkpoint", "weights"):
        val = params.get(key)
        if isinstance(val, str) and _URL.match(val):
            scheme = val.split("://", 1)[0].lower()
            how = _FETCH_HINT.get(scheme, "download it with the tool of its host")
            raise SpecError(f"generator.params.{key}", f"received the URL {val!r}; lrgan-dist never downloads "
                            f"checkpoints. Expected a local file path (on a cluster: one every node can read): "
                            f"fetch it first, e.g. {how}, then set {key}: checkpoints/<file>")


def _parse_samples(raw: Mapping[str, Any], base_dir: str) -> SamplesSpec:
    """``samples``: count/seed, or the user's own latents (``latents`` file or NVIDIA ``seeds``)."""
    s = _parse_dataclass(SamplesSpec, raw, "samples")
    _require(1 <= s.count <= MAX_SAMPLES, "samples.count", s.count, f"an integer in [1, {MAX_SAMPLES}] (at most)")
    _require(s.seed >= 0, "samples.seed", s.seed, "an integer >= 0")
    if s.latents is not None and s.seeds is not None:
        raise SpecError("samples", "received both latents and seeds; expected one of them")
    if s.space is not None and s.latents is None and s.seeds is None:
        raise SpecError("samples.space", f"received {s.space!r} without samples.latents; expected space only "
                        "with a latent file (it names the file's space)")
    if s.latents_sha256 is not None and s.latents is None:
        raise SpecError("samples.latents_sha256", "received without samples.latents; it is written by lrgan-dist "
                        "into stored specs, expected it not to be set by hand")
    if s.seeds is not None:
        if s.space not in (None, "z"):
            raise SpecError("samples.space", f"received {s.space!r} with seeds; seeds give z latents "
                            "(NVIDIA: np.random.RandomState(seed).randn(z_dim)), expected no space or 'z'")
        bad = [v for v in s.seeds if not 0 <= v < 2**32]
        if bad or not s.seeds:
            raise SpecError("samples.seeds", f"received {list(s.seeds)[:8] if s.seeds else []}; expected a "
                            "non-empty list of integers in [0, 2**32)")
        if "count" in raw and s.count != len(s.seeds):
            raise SpecError("samples.count", f"received {s.count} with {len(s.seeds)} seeds; expected no count "
                            "(it is the number of seeds)")
        return dataclasses.replace(s, count=len(s.seeds), space="z")
    if s.latents is None:
        return s
    if not s.latents:
        raise SpecError("samples.latents", "received an empty path; expected a .npy file of latents [N, d]")
    if _URL.match(s.latents):
        raise SpecError("samples.latents", f"received the URL {s.latents!r}; expected a local .npy file "
                        "(download it first)")
    path = Path(s.latents).expanduser()
    path = path if path.is_absolute() else Path(base_dir) / path
    path = Path(os.path.abspath(path))
    if not path.is_file():
        if s.latents_sha256 is not None:  # a spec read from a store: the store holds the latents
            return dataclasses.replace(s, latents=str(path))
        raise SpecError("samples.latents", f"file {str(path)!r} does not exist; expected a .npy file of "
                        "latents [N, d] (np.save)")
    shape, dtype = npy_header(path, "samples.latents")
    if len(shape) not in (2, 3) or shape[0] < 1 or dtype.kind != "f":
        raise SpecError("samples.latents", f"{str(path)!r} holds {dtype} {list(shape)}; expected float "
                        "latents [N, d] (one row per sample; [N, num_ws, w_dim] for per-slot W+)")
    if "count" in raw and s.count != shape[0]:
        raise SpecError("samples.count", f"received {s.count} but samples.latents holds {shape[0]} rows; "
                        "expected no count (it comes from the file)")
    return dataclasses.replace(s, latents=str(path), count=int(shape[0]), latents_sha256=file_sha256(path))


def npy_header(path: Path, field_name: str) -> tuple[tuple[int, ...], Any]:
    """(shape, dtype) of a ``.npy`` file from its header alone; SpecError if it is not one."""
    import numpy as np

    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, OSError) as exc:
        raise SpecError(field_name, f"{str(path)!r} is not a .npy file ({exc}); expected np.save of a float "
                        "array [N, d]") from None
    if dtype.hasobject:
        raise SpecError(field_name, f"{str(path)!r} holds Python objects (pickle); expected a float array [N, d]")
    return tuple(int(v) for v in shape), dtype


def _parse_region(name: str, raw: Any) -> RegionSpec:
    where = f"regions.{name}"
    if not isinstance(raw, Mapping):
        raise SpecError(where, f"received {raw!r}; expected a mapping with one of box, mask, preset, part")
    try:
        return _parse_dataclass(RegionSpec, raw, where, extra={"name": name})
    except RegionError as exc:  # the region type validates itself; name the spec's field
        if exc.field is None:
            raise
        raise SpecError(f"{where}.{exc.field}" if exc.field else where, exc.message) from None


def _parse_method(label: str, raw: Any, where: str | None = None) -> MethodSpec:
    where = where or f"methods.{label}"
    if raw is not None and not isinstance(raw, Mapping):
        raise SpecError(where, f"received {raw!r}; expected a mapping of parameters")
    raw = dict(raw or {})
    name = raw.pop("method", label)
    samples = raw.pop("samples", None)
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise SpecError(f"{where}.samples", f"received {samples!r}; expected an integer >= 1 (factorize the first "
                                            "N samples only) or null (every sample)")
    from lrgan_dist.core.methods import available_methods, get_method

    names = available_methods()
    if name not in names:
        raise SpecError(where if "method" not in raw else f"{where}.method",
                        f"unknown method {name!r}{_suggest(name, names)}; expected one of {names}")
    if "/" in label or "@" in label:
        raise SpecError(where, f"received label {label!r}; expected a name without '/' or '@'")
    for key, val in list(raw.items()):  # the paper writes λ = 1/60; accept that literally
        if isinstance(val, str) and _FRACTION.fullmatch(val):
            raw[key] = _parse_fraction(val, f"{where}.{key}")
    try:
        method = get_method(name, **raw)
    except (TypeError, ValueError) as exc:
        raise SpecError(where, str(exc)) from None
    if samples is not None and getattr(method, "population_only", False):
        raise SpecError(f"{where}.samples", f"received {samples!r} for {name!r}, which factorizes the population "
                                            "once; expected no samples key (it limits per-sample methods)")
    return MethodSpec(label=label, method=name, params=_freeze(raw), samples=samples)


# --------------------------------------------------------------------------- typed fields


def _parse_dataclass(cls: type, raw: Mapping[str, Any], where: str, extra: Mapping[str, Any] | None = None) -> Any:
    extra = dict(extra or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in extra]
    _check_keys(raw, names, where)
    kwargs = {}
    for name in names:
        if name in raw:
            kwargs[name] = _coerce(raw[name], hints[name], f"{where}.{name}")
    kwargs.update(extra)
    return cls(**kwargs)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        real = [a for a in args if a is not type(None)]
        if len(real) == 1:  # Optional[X]: X's own message is the most specific
            return _coerce(value, real[0], where)
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except SpecError as exc:
                errors.append(str(exc))
        raise SpecError(where, f"received {value!r}; expected {_describe(tp)}")
    if origin is Literal:
        if value not in args:
            raise SpecError(where, f"received {value!r}{_suggest(str(value), [str(a) for a in args])}; expected one of {list(args)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(where, f"received {value!r}; expected a list ({_describe(tp)})")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise SpecError(where, f"received {len(value)} values {list(value)}; expected {len(args)} values")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise SpecError(where, f"received {value!r}; expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(where, f"received {value!r}; expected an integer")
        return value
    if tp is float:
        if isinstance(value, str):
            value = _parse_fraction(value, where)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SpecError(where, f"received {value!r}; expected a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SpecError(where, f"received {value!r}; expected a string")
        return value
    if origin in (Mapping, dict) or tp is Any:
        return value
    raise TypeError(f"unsupported field type {tp} at {where}")


def _parse_fraction(text: str, where: str) -> float:
    """Accept '1/60' for λ-like fields, as the paper writes it."""
    try:
        if "/" in text:
            a, b = text.split("/", 1)
            return float(a) / float(b)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise SpecError(where, f"received {text!r}; expected a number such as 0.0167 or 1/60") from None


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + str(list(args))
    if origin is tuple:
        return "a list" if (len(args) == 2 and args[1] is Ellipsis) else f"a list of {len(args)} values"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false", type(None): "null"}.get(tp, str(tp))


def _check_keys(raw: Mapping[str, Any], valid: tuple[str, ...] | list[str], where: str) -> None:
    for key in raw:
        if key not in valid:
            path = f"{where}.{key}" if where else str(key)
            raise SpecError(path, f"unknown key {key!r}{_suggest(str(key), list(valid))}; expected one of {sorted(valid)}")


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    val = raw.get(key) or {}
    if not isinstance(val, Mapping):
        raise SpecError(key, f"received {val!r}; expected a mapping")
    return val


def _require(ok: bool, where: str, value: Any, expected: str) -> None:
    if not ok:
        raise SpecError(where, f"received {value!r}; expected {expected}")


def _freeze(d: dict[str, Any]) -> dict[str, Any]:
    # A private copy: the dataclass is frozen, nobody holds a reference to this dict.
    return json.loads(json.dumps(d))


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj

