"""Provenance helpers: JSON-able values and content digests (one definition each).

* :func:`to_jsonable` — plain JSON data for store attributes and summaries: mappings
  (string keys), lists, numbers (numpy scalars unboxed; NaN/Inf → ``None``, strict JSON
  has neither), small arrays/tensors as lists, anything else as its ``repr``;
* :func:`json_sha256` — SHA-256 of a value's canonical JSON (sorted keys, no spaces):
  fingerprints of specs, method parameters, plans;
* :func:`file_sha256` — SHA-256 of a file's bytes, read in 4 MiB blocks.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any, Mapping

import numpy as np

__all__ = ["to_jsonable", "json_sha256", "file_sha256"]

#: arrays and tensors up to this many elements are stored as lists, larger ones as a placeholder
_MAX_LIST = 64


def to_jsonable(obj: Any) -> Any:
    """Plain JSON data (see module doc)."""
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if type(obj).__module__ == "torch" and hasattr(obj, "numel"):  # a tensor, without importing torch
        return to_jsonable(obj.tolist()) if obj.numel() <= _MAX_LIST else f"<tensor {list(obj.shape)}>"
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return repr(obj)


def json_sha256(obj: Any) -> str:
    """SHA-256 (hex) of ``obj``'s canonical JSON; values JSON cannot hold go through :func:`to_jsonable`."""
    blob = json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
