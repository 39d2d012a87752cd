"""The zarr store (docs/architecture.md): the only layer that imports zarr."""
from lrgan_dist.store.layout import TABLE, ArraySpec, Layout
from lrgan_dist.store.zarrstore import DONE, FAILED, PENDING, Store, StoreError, create_array, diagnostic_fill

__all__ = ["StoreError", "Layout", "Store", "PENDING", "DONE", "FAILED", "diagnostic_fill", "TABLE", "ArraySpec",
           "create_array"]
