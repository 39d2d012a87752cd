"""Safe checkpoint loading: NVIDIA snapshot pickles (persistent classes) and rosinality .pt.

NVIDIA snapshots are built here with a small stand-in for ``torch_utils.persistence``
written in a temporary directory (classes whose ``__reduce__`` embeds their module
source, reconstructed by ``_reconstruct_persistent_obj(meta)`` which *executes* that
source -- as NVIDIA's does).  The stand-in is removed from ``sys.modules`` / ``sys.path``
before our loader reads the file, so nothing of it can be imported during loading.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
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
from lrgan_dist.generators.stylegan2.adapter import StyleGAN2Generator, random_network
from lrgan_dist.testing.nvidia import (  # noqa: F401
    DATA,
    DNNLIB_SRC,
    FAKE_MODULES,
    MALICIOUS_PAYLOAD,
    NETWORKS_SRC,
    PERSISTENCE_SRC,
    TINY_KWARGS,
    assert_nothing_imported,
    fake_nvidia,
    fixture_state,
    mirror,
    tiny_net,
    write_snapshot,
)


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
