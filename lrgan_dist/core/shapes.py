"""Shape checks at module boundaries (docs/architecture.md, after stylegan3's ``misc.assert_shape``)."""
from __future__ import annotations

from typing import Any, Sequence

__all__ = ["assert_shape"]


def assert_shape(t: Any, shape: Sequence[int | None], name: str = "tensor") -> None:
    """Raise with received vs expected shape; ``None`` entries match any size."""
    got = tuple(t.shape)
    if len(got) != len(shape) or any(s is not None and g != s for g, s in zip(got, shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name}: expected shape {want}, received {list(got)}")
