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
from typing import Any

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

# name → module; resolved on first access by importlib (no static import: ``import
# lrgan_dist`` stays light and the package root depends on no layer, docs/architecture.md).
_LAZY = {
    "open_store": "lrgan_dist.analysis.loaders",
    "load_directions": "lrgan_dist.analysis.loaders",
    "load_transfer": "lrgan_dist.analysis.loaders",
    "export_reference": "lrgan_dist.apply.export",
    "load_spec": "lrgan_dist.spec",
    "JobSpec": "lrgan_dist.spec",
    "SpecError": "lrgan_dist.spec",
    "validate": "lrgan_dist.api",
    "submit": "lrgan_dist.api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lrgan_dist' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
