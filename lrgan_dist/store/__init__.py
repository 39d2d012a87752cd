"""The zarr store (DESIGN.md §4): the only layer that imports zarr."""
from lrgan_dist.store.zarrstore import DONE, FAILED, PENDING, Layout, Store, StoreError, diagnostic_fill

__all__ = ["StoreError", "Layout", "Store", "PENDING", "DONE", "FAILED", "diagnostic_fill"]
