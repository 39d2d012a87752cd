"""lrgan-dist: LowRankGAN (Zhu et al., NeurIPS 2021) as a distributed batch analysis.

The public Python API (importing ``lrgan_dist`` loads neither torch, ray, zarr nor
pandas; each name imports its layer on first use)::

    import lrgan_dist as lg

    spec = lg.validate("job.yaml")                 # JobSpec, or SpecError naming every bad field
    summary = lg.submit("job.yaml", store="runs/a.zarr", samples=16)   # runs on Ray, returns the summary
    st = lg.open_store("runs/a.zarr")              # read handle (lrgan_dist.store.zarrstore.Store)
    df = lg.load_directions(st, region="eyes", method="lowrankgan")    # pandas, per (sample, direction)
    tr = lg.load_transfer(st)                      # the cross-image transfer table (pandas)
    lg.export_reference(st, "eyes", "lowrankgan", "out/")             # [k, d] .npy per sample

``load_spec``, ``JobSpec`` and ``SpecError`` are re-exported from :mod:`lrgan_dist.spec`.
See docs/architecture.md for the layers and docs/spec.md for every job-spec key.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "JobSpec",
    "SpecError",
    "export_reference",
    "load_directions",
    "load_spec",
    "load_transfer",
    "open_store",
    "submit",
    "validate",
]

_LAZY = {
    "open_store": "lrgan_dist.analysis.loaders",
    "load_directions": "lrgan_dist.analysis.loaders",
    "load_transfer": "lrgan_dist.analysis.loaders",
    "export_reference": "lrgan_dist.apply.export",
    "load_spec": "lrgan_dist.spec",
    "JobSpec": "lrgan_dist.spec",
    "SpecError": "lrgan_dist.spec",
}

if TYPE_CHECKING:  # pragma: no cover
    from lrgan_dist.analysis.loaders import load_directions, load_transfer, open_store
    from lrgan_dist.apply.export import export_reference
    from lrgan_dist.spec import JobSpec, SpecError, load_spec


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lrgan_dist' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def validate(job: Any) -> Any:
    """Parse and validate a job spec (a YAML path or an already-parsed mapping); returns the
    :class:`~lrgan_dist.spec.JobSpec`. Raises ``SpecError`` (``SpecErrors`` listing every bad field)."""
    from pathlib import Path

    from lrgan_dist.spec import load_spec, parse_spec

    if isinstance(job, (str, Path)):
        return load_spec(job)
    return parse_spec(job)


def submit(job: Any, *, store: str | None = None, samples: int | None = None, actors: int | None = None,
           address: str | None = None, stages: Any = None, fresh: bool = False, retry_failed: bool = False,
           show_progress: bool = False, report_dir: str | None | bool = None) -> dict[str, Any]:
    """Run a job (a YAML path, a mapping or a JobSpec) like ``lrgan-dist submit`` and return its
    JSON-able summary. ``address``: None/local (embedded Ray), ``auto``, ``HOST:PORT`` or ``ray://…``;
    the Jobs API (``http://``) is the CLI's. ``report_dir=False`` skips the report."""
    from lrgan_dist.pipeline.scheduler import parse_stages
    from lrgan_dist.pipeline.scheduler import submit as run_submit
    from lrgan_dist.spec import JobSpec

    spec = job if isinstance(job, JobSpec) else validate(job)
    spec = spec.with_overrides(store=store, samples=samples, actors=actors)
    from lrgan_dist.pipeline.cluster_paths import absolute_store_uri

    spec = spec.with_overrides(store=absolute_store_uri(spec.store.uri))
    return run_submit(spec, stages=parse_stages(stages), address=address, fresh=fresh, show_progress=show_progress,
                      retry_failed=retry_failed, report_dir=report_dir)
