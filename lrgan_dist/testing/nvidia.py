"""Fake NVIDIA snapshot pickles for tests of the safe loader (no NVIDIA code).

NVIDIA snapshots are built with a small stand-in for ``torch_utils.persistence`` written
in a temporary directory (classes whose ``__reduce__`` embeds their module source,
reconstructed by ``_reconstruct_persistent_obj(meta)`` which *executes* that source -- as
NVIDIA's does).  The stand-in is removed from ``sys.modules`` / ``sys.path`` before a
loader reads the file, so nothing of it can be imported during loading.
"""
from __future__ import annotations

import contextlib
import importlib
import math
import pickle
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrgan_dist.generators.stylegan2.net import Generator

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "stylegan2ada-tiny"  # repository checkout
TINY_KWARGS: dict[str, Any] = dict(z_dim=64, c_dim=0, w_dim=64, img_resolution=32, img_channels=3,
                   mapping_kwargs=dict(num_layers=2, lr_multiplier=0.01),
                   synthesis_kwargs=dict(channel_base=2048, channel_max=64, num_fp16_res=0, conv_clamp=None,
                                         architecture="skip"))

PERSISTENCE_SRC = '''
"""Test stand-in for NVIDIA's torch_utils.persistence (same pickle format)."""
import copy, inspect, sys, types, uuid

_version = 6
_src_to_module = {}
_module_to_src = {}


def persistent_class(orig_class):
    module = sys.modules[orig_class.__module__]
    src = _module_to_src.get(module.__name__) or inspect.getsource(module)

    class Decorator(orig_class):
        _orig_module_src = src
        _orig_class_name = orig_class.__name__

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._init_args = copy.deepcopy(args)
            self._init_kwargs = copy.deepcopy(kwargs)

        def __reduce__(self):
            fields = list(super().__reduce__())
            fields += [None] * max(3 - len(fields), 0)
            if fields[0] is not _reconstruct_persistent_obj:
                meta = dict(type="class", version=_version, module_src=self._orig_module_src,
                            class_name=self._orig_class_name, state=fields[2])
                fields[0] = _reconstruct_persistent_obj
                fields[1] = (meta,)
                fields[2] = None
            return tuple(fields)

    Decorator.__name__ = orig_class.__name__
    return Decorator


def _reconstruct_persistent_obj(meta):
    # What NVIDIA's loader does: execute the embedded module source.
    src = meta["module_src"]
    module = _src_to_module.get(src)
    if module is None:
        name = "_imported_module_" + uuid.uuid4().hex
        module = types.ModuleType(name)
        sys.modules[name] = module
        _module_to_src[name] = src
        exec(src, module.__dict__)
        _src_to_module[src] = module
    cls = persistent_class(module.__dict__[meta["class_name"]])
    obj = cls.__new__(cls)
    obj.__setstate__(dict(meta["state"]))
    return obj
'''

DNNLIB_SRC = '''
class EasyDict(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __setattr__(self, name, value):
        self[name] = value
'''

NETWORKS_SRC = '''
import torch
from torch_utils import persistence

{payload}

def _make(name):
    def __init__(self, **kwargs):
        torch.nn.Module.__init__(self)
    return persistence.persistent_class(type(name, (torch.nn.Module,), {{"__init__": __init__}}))

for _name in ["Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "SynthesisLayer",
              "ToRGBLayer", "FullyConnectedLayer", "Conv2dLayer", "Discriminator", "AugmentPipe"]:
    globals()[_name] = _make(_name)
'''

MALICIOUS_PAYLOAD = '''
if __name__.startswith("_imported_module_"):  # runs only when a loader executes module_src
    with open({marker!r}, "w") as f:
        f.write("module_src was executed")
'''

FAKE_MODULES = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util", "fake_networks")


@contextlib.contextmanager
def fake_nvidia(tmp: Path, payload: str = ""):
    """Make fake ``torch_utils``, ``dnnlib`` and ``fake_networks`` importable, then remove them."""
    root = tmp / "fake_nvidia"
    (root / "torch_utils").mkdir(parents=True, exist_ok=True)
    (root / "dnnlib").mkdir(exist_ok=True)
    (root / "torch_utils" / "__init__.py").write_text("")
    (root / "torch_utils" / "persistence.py").write_text(PERSISTENCE_SRC)
    (root / "dnnlib" / "__init__.py").write_text("from .util import EasyDict\n")
    (root / "dnnlib" / "util.py").write_text(DNNLIB_SRC)
    (root / "fake_networks.py").write_text(NETWORKS_SRC.format(payload=textwrap.dedent(payload)))
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield importlib.import_module("fake_networks"), importlib.import_module("dnnlib")
    finally:
        sys.path.remove(str(root))
        for name in list(sys.modules):
            if name in FAKE_MODULES or name.startswith("_imported_module_"):
                del sys.modules[name]
        importlib.invalidate_caches()


def mirror(net: torch.nn.Module, nets, init_kwargs=None) -> torch.nn.Module:
    """A persistent fake-module tree with our network's official names, tensors and init_kwargs."""
    cls = getattr(nets, type(net).__name__)
    obj = cls(**(init_kwargs or {}))
    for name, p in net._parameters.items():
        obj.register_parameter(name, None if p is None else torch.nn.Parameter(p.detach().clone()))
    for name, b in net._buffers.items():
        assert b is not None  # our networks register no None buffers
        obj.register_buffer(name, b.detach().clone())
    for name, child in net._modules.items():
        assert child is not None  # nor None submodules
        obj.add_module(name, mirror(child, nets))
    if type(net).__name__ == "SynthesisLayer":  # numpy scalars, as in the official modules
        obj.act_gain = np.float64(math.sqrt(2))
        obj.padding = np.int64(1)
    return obj


def tiny_net(state: dict | None = None) -> Generator:
    g = Generator(**TINY_KWARGS)
    if state is not None:
        g.load_state_dict(state)
    return g.eval().requires_grad_(False)


def fixture_state() -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in np.load(DATA / "G_ema_state.npz").items()}


def write_snapshot(path: Path, g_ema: Generator, g: Generator, init_kwargs: dict, protocol: int = 4,
                   payload: str = "", extra: dict | None = None) -> bytes:
    with fake_nvidia(path.parent, payload) as (nets, dnnlib):
        D = nets.Discriminator(c_dim=0, img_resolution=32)
        D.register_parameter("b32_fromrgb_weight", torch.nn.Parameter(torch.randn(8, 3, 1, 1)))
        snap = {
            "G": mirror(g, nets, init_kwargs),
            "D": D,
            "G_ema": mirror(g_ema, nets, init_kwargs),
            "augment_pipe": None,
            "training_set_kwargs": dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset",
                                                   path="/data/x.zip", use_labels=False, max_size=np.int64(70000),
                                                   xflip=False, resolution=32,
                                                   mean=np.arange(3, dtype=np.float32)),
            **(extra or {}),
        }
        data = pickle.dumps(snap, protocol=protocol)
    path.write_bytes(data)
    for name in FAKE_MODULES:
        assert name not in sys.modules
    return data


def assert_nothing_imported():
    for name in FAKE_MODULES:
        assert name not in sys.modules, name
    assert not any(n.startswith("_imported_module_") for n in sys.modules)
