"""Safe checkpoint loading: NVIDIA snapshot pickles (persistent classes) and rosinality .pt.

NVIDIA snapshots are built here with a small stand-in for ``torch_utils.persistence``
written in a temporary directory (classes whose ``__reduce__`` embeds their module
source, reconstructed by ``_reconstruct_persistent_obj(meta)`` which *executes* that
source -- as NVIDIA's does).  The stand-in is removed from ``sys.modules`` / ``sys.path``
before our loader reads the file, so nothing of it can be imported during loading.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import pickle
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from lrgan_dist.generators import GeneratorError
from lrgan_dist.generators.checkpoints import (
    UnsafeCheckpointError,
    build_network,
    load_checkpoint,
    official_to_rosinality,
)
from lrgan_dist.generators.stylegan2 import StyleGAN2Generator, random_network
from lrgan_dist.generators.stylegan2_net import Generator

DATA = Path(__file__).resolve().parents[1] / "data" / "stylegan2ada-tiny"
TINY_KWARGS = dict(z_dim=64, c_dim=0, w_dim=64, img_resolution=32, img_channels=3,
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
        obj.register_buffer(name, b.detach().clone())
    for name, child in net._modules.items():
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


@pytest.fixture(scope="module")
def ref():
    return {k: torch.from_numpy(v) for k, v in np.load(DATA / "ref.npz").items()}


# --------------------------------------------------------------------------- NVIDIA pickles

def test_snapshot_uses_g_ema_and_matches_official(tmp_path, ref):
    g_ema = tiny_net(fixture_state())
    g = tiny_net()  # other (random) weights: a loader that picks G gets a different image
    path = tmp_path / "network-snapshot-000000.pkl"
    write_snapshot(path, g_ema, g, TINY_KWARGS)
    ckpt = load_checkpoint(path)
    assert_nothing_imported()
    assert ckpt.format == "nvidia-pkl" and ckpt.meta["module_src_executed"] is False
    assert ckpt.init_kwargs["synthesis_kwargs"]["channel_base"] == 2048
    assert ckpt.meta["training_set_kwargs"]["max_size"] == 70000
    assert ckpt.meta["training_set_kwargs"]["mean"] == [0.0, 1.0, 2.0]
    fx = fixture_state()
    assert set(ckpt.state_dict) == set(fx)
    assert all(torch.equal(ckpt.state_dict[k], fx[k]) for k in fx)

    gen = StyleGAN2Generator(checkpoint=str(path), space="w")
    img = gen.synthesize_ws(ref["ws"])
    assert (img - ref["img"]).abs().max() <= 1e-4
    assert (gen.mapping(ref["z"].float(), truncation=0.7) - ref["ws_psi07"]).abs().max() <= 1e-4
    assert (img - ref["img_from_G_not_ema"]).abs().max() > 0.1
    info = json.loads(json.dumps(gen.info()))
    assert info["checkpoint"]["format"] == "nvidia-pkl" and len(info["checkpoint"]["sha256"]) == 64


def test_numpy1_and_numpy2_module_paths(tmp_path):
    g = tiny_net(fixture_state())
    p2 = tmp_path / "np2.pkl"
    data = write_snapshot(p2, g, g, TINY_KWARGS, protocol=2)  # text GLOBAL opcodes
    np_mod = np.float64(1).__reduce__()[0].__module__  # numpy._core.multiarray under numpy 2
    assert f"c{np_mod}\nscalar\n".encode() in data
    legacy = data.replace(f"c{np_mod}\n".encode(), b"cnumpy.core.multiarray\n")
    assert legacy != data and b"cnumpy.core.multiarray\nscalar\n" in legacy
    p1 = tmp_path / "np1.pkl"
    p1.write_bytes(legacy)
    a, b = load_checkpoint(p2), load_checkpoint(p1)
    assert a.meta["training_set_kwargs"] == b.meta["training_set_kwargs"]
    assert b.meta["training_set_kwargs"]["max_size"] == 70000
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


@pytest.mark.parametrize("cfg", [
    dict(architecture="resnet", c_dim=3, img_resolution=16, channel_base=256, channel_max=16),
    dict(architecture="orig", conv_clamp=256, num_fp16_res=2, img_resolution=16, channel_base=256, channel_max=16),
], ids=["resnet-conditional", "orig-fp16-clamp"])
def test_snapshot_other_architectures(tmp_path, cfg):
    base = dict(z_dim=32, w_dim=32, mapping_layers=3, perturb=0.1)
    net, _ = random_network(**base, **cfg)
    path = tmp_path / "snap.pkl"
    write_snapshot(path, net, net, net.init_kwargs)
    ckpt = load_checkpoint(path)
    assert ckpt.init_kwargs == net.init_kwargs
    loaded = build_network(ckpt)
    z = torch.randn(2, 32)
    c = torch.eye(3)[:2] if cfg.get("c_dim") else None
    assert torch.equal(loaded(z, c), net(z, c))


def test_architecture_and_shape_mismatch_errors(tmp_path):
    g = tiny_net(fixture_state())
    bad = {**TINY_KWARGS, "synthesis_kwargs": {**TINY_KWARGS["synthesis_kwargs"], "architecture": "resnet"}}
    path = tmp_path / "bad_arch.pkl"
    write_snapshot(path, g, g, bad)
    with pytest.raises(GeneratorError, match=r"architecture.*'resnet'.*'skip'"):
        build_network(load_checkpoint(path))
    bad = {**TINY_KWARGS, "synthesis_kwargs": {**TINY_KWARGS["synthesis_kwargs"], "channel_max": 32}}
    path = tmp_path / "bad_shape.pkl"
    write_snapshot(path, g, g, bad)
    msg = r"synthesis\.b4\.const: received shape \[64, 4, 4\], expected \[32, 4, 4\]"
    with pytest.raises(GeneratorError, match=msg):
        StyleGAN2Generator(checkpoint=str(path))


# --------------------------------------------------------------------------- malicious files

class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def _evil_payloads(marker: Path):
    import subprocess

    return {
        "os.system": _Evil(os.system, f"touch {marker}"),
        "builtins.exec": _Evil(exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.eval": _Evil(eval, f"open({str(marker)!r}, 'w')"),
        "subprocess.call": _Evil(subprocess.call, ["touch", str(marker)]),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "builtins.eval", "subprocess.call"])
def test_malicious_reduce_refused(tmp_path, kind):
    marker = tmp_path / "pwned"
    evil = _evil_payloads(marker)[kind]
    path = tmp_path / "evil.pkl"
    # hidden inside an otherwise valid snapshot
    g = tiny_net(fixture_state())
    write_snapshot(path, g, g, TINY_KWARGS, extra={"augment_pipe": evil})
    with pytest.raises(UnsafeCheckpointError, match="refusing to load global"):
        load_checkpoint(path)
    path.write_bytes(pickle.dumps({"G_ema": evil}))
    with pytest.raises(UnsafeCheckpointError, match="refusing to load global") as exc:
        StyleGAN2Generator(checkpoint=str(path))
    assert "never runs code" in str(exc.value)
    assert not marker.exists()


def test_malicious_storage_bytes_refused(tmp_path):
    marker = tmp_path / "pwned"
    inner = pickle.dumps(_Evil(os.system, f"touch {marker}"), protocol=2)

    class Storage:
        def __reduce__(self):
            return torch.storage._load_from_bytes, (inner,)

    path = tmp_path / "evil_storage.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Storage()}))
    with pytest.raises(UnsafeCheckpointError, match="weights-only"):
        load_checkpoint(path)
    assert not marker.exists()


def test_persistent_module_src_never_executed(tmp_path, ref):
    marker = tmp_path / "module_src_ran"
    g = tiny_net(fixture_state())
    path = tmp_path / "snapshot.pkl"
    data = write_snapshot(path, g, g, TINY_KWARGS, payload=MALICIOUS_PAYLOAD.format(marker=str(marker)))
    assert not marker.exists()
    gen = StyleGAN2Generator(checkpoint=str(path))  # loads fine, without running module_src
    assert not marker.exists()
    assert_nothing_imported()
    assert (gen.synthesize_ws(ref["ws"]) - ref["img"]).abs().max() <= 1e-4
    # The file really is malicious: NVIDIA-style loading (exec of module_src) runs the payload.
    with fake_nvidia(tmp_path, payload=MALICIOUS_PAYLOAD.format(marker=str(marker))):
        pickle.loads(data)
    assert marker.exists()


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "junk.pkl"
    p.write_bytes(b"\x80\x04junk")
    with pytest.raises(GeneratorError, match="not a readable pickle"):
        load_checkpoint(p)
    p.write_bytes(b"hello")
    with pytest.raises(GeneratorError, match="neither a pickle"):
        load_checkpoint(p)
    p.write_bytes(pickle.dumps({"G": 1}))
    with pytest.raises(GeneratorError, match="'G_ema'"):
        load_checkpoint(p)


def test_stylegan3_layout_rejected(tmp_path):
    g = tiny_net(fixture_state())
    with fake_nvidia(tmp_path) as (nets, _):
        tree = mirror(g, nets, TINY_KWARGS)
        tree.synthesis.add_module("L0_36_512", nets.SynthesisLayer())
        tree.synthesis._modules["L0_36_512"].register_parameter("weight", torch.nn.Parameter(torch.zeros(2)))
        data = pickle.dumps({"G_ema": tree})
    p = tmp_path / "sg3.pkl"
    p.write_bytes(data)
    with pytest.raises(GeneratorError, match="StyleGAN3"):
        load_checkpoint(p)


# --------------------------------------------------------------------------- rosinality

@pytest.mark.parametrize("zipfmt", [True, False], ids=["zip", "legacy"])
def test_rosinality_roundtrip_fixture(tmp_path, ref, zipfmt):
    fx = fixture_state()
    ros = official_to_rosinality(fx)
    assert "style.1.weight" in ros and "convs.0.conv.weight" in ros and "to_rgbs.2.bias" in ros
    assert ros["conv1.conv.weight"].shape == (1, 64, 64, 3, 3) and ros["noises.noise_6"].shape == (1, 1, 32, 32)
    path = tmp_path / "ros.pt"
    torch.save({"g_ema": ros, "latent_avg": fx["mapping.w_avg"], "args": argparse.Namespace(size=32)}, path,
               _use_new_zipfile_serialization=zipfmt)
    gen = StyleGAN2Generator(checkpoint=str(path))
    ckpt_kw = gen.info()["init_kwargs"]
    assert ckpt_kw["img_resolution"] == 32 and ckpt_kw["mapping_kwargs"]["num_layers"] == 2
    assert ckpt_kw["synthesis_kwargs"]["channel_base"] == 2048
    assert (gen.mapping(ref["z"].float()) - ref["ws"]).abs().max() <= 1e-4
    assert (gen.synthesize_ws(ref["ws"]) - ref["img"]).abs().max() <= 1e-4
    assert (gen.mapping(ref["z"].float(), truncation=0.7) - ref["ws_psi07"]).abs().max() <= 1e-4


def test_rosinality_varying_channels_and_estimated_w_avg(tmp_path):
    net, _ = random_network(z_dim=32, w_dim=32, mapping_layers=4, img_resolution=32, channel_base=256,
                            channel_max=16, perturb=0.1)  # channels 16, 16, 16, 8
    sd = {k: v for k, v in net.state_dict().items()}
    path = tmp_path / "ros.pt"
    torch.save({"g_ema": official_to_rosinality(sd)}, path)
    gen = StyleGAN2Generator(checkpoint=str(path), space="z", dtype="float64")
    assert gen.info()["checkpoint"]["w_avg"].startswith("estimated")
    ws = torch.randn(2, net.num_ws, 32)
    assert (gen.synthesize_ws(ws.double()) - net.synthesis(ws).double()).abs().max() <= 1e-4
    assert (gen.net.mapping.w_avg.float() - net.mapping.w_avg).abs().max() < 0.2


def test_rosinality_malicious_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": _Evil(os.system, f"touch {marker}")}, path)
    with pytest.raises(UnsafeCheckpointError, match="weights-only"):
        StyleGAN2Generator(checkpoint=str(path))
    assert not marker.exists()
