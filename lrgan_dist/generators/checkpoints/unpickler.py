"""The restricted unpickler: the allow-list of globals an NVIDIA snapshot may name, each an inert stand-in.

Reviewable on its own: nothing here executes code from a file.  See
:mod:`lrgan_dist.generators.checkpoints` for the snapshot format and the table of stand-ins.
"""
from __future__ import annotations

import _compat_pickle
import collections
import hashlib
import io
import pickle
import re
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal, cast

import numpy as np
import torch

from lrgan_dist.generators.base import GeneratorError

__all__ = ["UnsafeCheckpointError", "PersistentObject", "RestrictedUnpickler", "safe_unpickle"]


class UnsafeCheckpointError(GeneratorError):
    """The checkpoint asks for something the safe loader will not do (e.g. import a global)."""


# --------------------------------------------------------------------------- stand-ins

@dataclass
class PersistentObject:
    """What ``_reconstruct_persistent_obj(meta)`` would have rebuilt -- as inert data."""

    class_name: str
    version: Any
    module_src: str  # never executed
    state: dict

    @property
    def module_src_sha256(self) -> str:
        return hashlib.sha256(self.module_src.encode("utf-8", "replace")).hexdigest()


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    if not isinstance(meta, dict) or not {"type", "class_name", "state"} <= set(meta):
        got = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise UnsafeCheckpointError(
            f"persistent object: expected meta with keys type, version, module_src, class_name, state; received {got}")
    if meta["type"] != "class":
        raise UnsafeCheckpointError(f"persistent object: expected type 'class', received {meta['type']!r}")
    state = meta["state"]
    if not isinstance(state, dict):
        raise UnsafeCheckpointError(
            f"persistent object {meta['class_name']!r}: expected a state dict, received {type(state).__name__}")
    src = meta.get("module_src", "")
    return PersistentObject(class_name=str(meta["class_name"]), version=meta.get("version"),
                            module_src=src if isinstance(src, str) else "", state=dict(state))


def _storage_from_bytes(b: Any) -> Any:
    if not isinstance(b, (bytes, bytearray)):
        raise UnsafeCheckpointError(f"torch storage: expected bytes, received {type(b).__name__}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = torch.load(io.BytesIO(bytes(b)), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(f"torch storage refused by torch's weights-only loader: {exc}") from None
    except Exception as exc:  # corrupt stream
        raise GeneratorError(f"torch storage: cannot read the serialized storage: {exc}") from None
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise UnsafeCheckpointError(f"torch storage: expected a storage, received {type(storage).__name__}")
    return storage


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    if isinstance(storage, torch.storage.TypedStorage):
        dtype, untyped = storage.dtype, storage._untyped_storage
    elif isinstance(storage, torch.UntypedStorage):
        dtype, untyped = torch.uint8, storage
    else:
        raise UnsafeCheckpointError(f"tensor: expected a storage, received {type(storage).__name__}")
    if not (isinstance(storage_offset, int) and all(isinstance(s, int) for s in (*size, *stride))):
        raise UnsafeCheckpointError("tensor: offset, size and stride must be integers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = torch.empty((0,), dtype=dtype)
        t.set_(untyped, int(storage_offset), torch.Size(tuple(size)), tuple(stride))
    return t


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None, *_: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise UnsafeCheckpointError(f"parameter: expected a tensor, received {type(data).__name__}")
    return data


def _codecs_encode(s: Any, encoding: Any = "utf-8", *_: Any) -> bytes:
    if not isinstance(s, str) or str(encoding).lower().replace("-", "").replace("_", "") not in ("latin1", "utf8"):
        raise UnsafeCheckpointError("_codecs.encode: only str -> bytes with latin-1/utf-8 is allowed")
    return s.encode(encoding)


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""

    def __setstate__(self, state: Any) -> None:  # EasyDict has no instance state
        pass


_NP_SIMPLE = re.compile(r"^[<>|=]?(?:[biufc]\d+|\?|b1|[biufc])$")


class _NPDType:
    """Stand-in for ``numpy.dtype(spec, align, copy)`` + ``__setstate__``: simple kinds only."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(spec, str) or not _NP_SIMPLE.match(spec):
            raise UnsafeCheckpointError(f"numpy dtype {spec!r}: only plain numeric dtypes are allowed")
        self.spec, self.order = spec, "="

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.order = state[1]

    @property
    def dtype(self) -> np.dtype:
        dt = np.dtype(self.spec)
        return dt.newbyteorder(cast("Literal['<', '>']", self.order)) if self.order in "<>" else dt


class _NDArrayMarker:
    """Stand-in for the ``numpy.ndarray`` class argument of ``_reconstruct``."""


class _NDArray:
    """Stand-in for ``numpy.core.multiarray._reconstruct(ndarray, shape, typecode)``."""

    def __init__(self) -> None:
        self.value: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise UnsafeCheckpointError("numpy array: unexpected pickled state")
        _, shape, dt, fortran, raw = state if len(state) == 5 else (1, *state)
        if not isinstance(dt, _NPDType):
            raise UnsafeCheckpointError("numpy array: unexpected dtype object")
        if not isinstance(raw, (bytes, bytearray)):
            raise UnsafeCheckpointError("numpy array: object arrays are not allowed")
        arr = np.frombuffer(bytes(raw), dtype=dt.dtype)
        self.value = arr.reshape(tuple(shape), order="F" if fortran else "C").copy()


def _np_reconstruct(cls: Any, shape: Any = (0,), typecode: Any = b"b") -> _NDArray:
    if cls is not _NDArrayMarker:
        raise UnsafeCheckpointError("numpy _reconstruct: only numpy.ndarray may be reconstructed")
    return _NDArray()


def _np_scalar(dt: Any, data: Any = b"") -> Any:
    if not isinstance(dt, _NPDType) or not isinstance(data, (bytes, bytearray)):
        raise UnsafeCheckpointError("numpy scalar: only numeric scalars are allowed")
    return np.frombuffer(bytes(data), dtype=dt.dtype)[0]


def _np_frombuffer(buf: Any, dt: Any, shape: Any, order: Any = "C") -> np.ndarray:
    if not isinstance(dt, _NPDType) or not isinstance(buf, (bytes, bytearray)):
        raise UnsafeCheckpointError("numpy _frombuffer: only numeric buffers are allowed")
    return np.frombuffer(bytes(buf), dtype=dt.dtype).reshape(tuple(shape), order=order).copy()


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("_codecs", "encode"): _codecs_encode,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("numpy", "dtype"): _NPDType,
    ("numpy", "ndarray"): _NDArrayMarker,
}
for _np_mod in ("numpy.core", "numpy._core"):
    _SAFE_GLOBALS[(f"{_np_mod}.multiarray", "scalar")] = _np_scalar
    _SAFE_GLOBALS[(f"{_np_mod}.multiarray", "_reconstruct")] = _np_reconstruct
    _SAFE_GLOBALS[(f"{_np_mod}.numeric", "_frombuffer")] = _np_frombuffer


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the allow-listed globals, to inert stand-ins."""

    source = "<pickle>"

    def find_class(self, module: str, name: str) -> Any:
        # Python-2 names written by protocols < 3 (``__builtin__.set``), as pickle's own find_class maps them.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"checkpoint {self.source}: refusing to load global '{module}.{name}' -- the safe loader only "
                f"rebuilds tensors, numpy values, containers and NVIDIA persistent-class records, and never runs "
                f"code from the file") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(f"checkpoint {self.source}: persistent ids are not allowed (received {pid!r})")


def _plain(obj: Any, _memo: dict[int, Any] | None = None) -> Any:
    """Replace stand-ins by plain values (numpy arrays, dicts) throughout a loaded object."""
    memo = {} if _memo is None else _memo
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, _NDArray):
        out: Any = obj.value
    elif isinstance(obj, _NPDType):
        out = obj.dtype
    elif isinstance(obj, dict):
        out = {}
        memo[id(obj)] = out
        for k, v in obj.items():
            out[k] = _plain(v, memo)
        return out
    elif isinstance(obj, list):
        out = []
        memo[id(obj)] = out
        out.extend(_plain(v, memo) for v in obj)
        return out
    elif isinstance(obj, tuple):
        out = tuple(_plain(v, memo) for v in obj)
    elif isinstance(obj, PersistentObject):
        out = PersistentObject(obj.class_name, obj.version, obj.module_src, {})
        memo[id(obj)] = out
        out.state.update(_plain(obj.state, memo))
        return out
    else:
        out = obj
    memo[id(obj)] = out
    return out


def safe_unpickle(f: BinaryIO, source: str = "<pickle>") -> Any:
    """Unpickle with :class:`RestrictedUnpickler`; stand-ins replaced by plain values."""
    up = RestrictedUnpickler(f)
    up.source = source
    try:
        obj = up.load()
    except GeneratorError:
        raise
    except Exception as exc:  # malformed stream: any error the unpickler raises
        raise GeneratorError(f"checkpoint {source}: not a readable pickle ({type(exc).__name__}: {exc}); expected a "
                             f"complete NVIDIA snapshot .pkl (truncated or corrupt file?)") from None
    return _plain(obj)


