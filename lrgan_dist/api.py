"""The public API's functions that run or check a job (``lrgan_dist.validate``, ``lrgan_dist.submit``).

Re-exported lazily by :mod:`lrgan_dist` (see its docstring for the whole API).
"""
from __future__ import annotations

from typing import Any, Literal

from lrgan_dist.spec import JobSpec

__all__ = ["validate", "submit"]


def validate(job: Any) -> JobSpec:
    """Parse and validate a job spec (a YAML path or an already-parsed mapping); returns the
    :class:`~lrgan_dist.spec.JobSpec`. Raises ``SpecError`` (``SpecErrors`` listing every bad field)."""
    from pathlib import Path

    from lrgan_dist.spec import load_spec, parse_spec

    if isinstance(job, (str, Path)):
        return load_spec(job)
    return parse_spec(job)


def submit(job: Any, *, store: str | None = None, samples: int | None = None, actors: int | None = None,
           address: str | None = None, stages: Any = None, fresh: bool = False, retry_failed: bool = False,
           show_progress: bool = False, report_dir: str | None | Literal[False] = None) -> dict[str, Any]:
    """Run a job (a YAML path, a mapping or a JobSpec) like ``lrgan-dist submit`` and return its
    JSON-able summary. ``address``: None/local (embedded Ray), ``auto``, ``HOST:PORT`` or ``ray://…``;
    the Jobs API (``http://``) is the CLI's. ``report_dir=False`` skips the report."""
    from lrgan_dist.pipeline.scheduler import parse_stages
    from lrgan_dist.pipeline.scheduler import submit as run_submit

    spec = job if isinstance(job, JobSpec) else validate(job)
    spec = spec.with_overrides(store=store, samples=samples, actors=actors)
    from lrgan_dist.pipeline.cluster_paths import absolute_store_uri

    spec = spec.with_overrides(store=absolute_store_uri(spec.store.uri))
    return run_submit(spec, stages=parse_stages(stages), address=address, fresh=fresh, show_progress=show_progress,
                      retry_failed=retry_failed, report_dir=report_dir)
