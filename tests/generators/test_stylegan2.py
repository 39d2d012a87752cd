"""Our StyleGAN2 vs NVIDIA's official generator (fixture), and configurations it does not cover.

Fixture: tests/data/stylegan2ada-tiny (official stylegan2-ada-pytorch outputs; README there).
Parity bounds: images and ws ≤ 1e-4 max abs; Jacobian in w ≤ 1e-4 relative (float64).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.func import jacfwd, jacrev, jvp, vjp

from lrgan_dist.generators import GeneratorError, build_generator
from lrgan_dist.generators.stylegan2.adapter import StyleGAN2Generator, to_uint8
from lrgan_dist.generators.stylegan2.net import Generator

DATA = Path(__file__).resolve().parents[1] / "data" / "stylegan2ada-tiny"
TINY_KWARGS = dict(z_dim=64, c_dim=0, w_dim=64, img_resolution=32, img_channels=3,
                   mapping_kwargs=dict(num_layers=2, lr_multiplier=0.01),
                   synthesis_kwargs=dict(channel_base=2048, channel_max=64, num_fp16_res=0, conv_clamp=None,
                                         architecture="skip"))


def fixture_state() -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in np.load(DATA / "G_ema_state.npz").items()}


@pytest.fixture(scope="module")
def ref():
    return {k: torch.from_numpy(v) for k, v in np.load(DATA / "ref.npz").items()}


@pytest.fixture(scope="module")
def tiny():
    g = Generator(**TINY_KWARGS)
    g.load_state_dict(fixture_state(), strict=True)
    return g.eval().requires_grad_(False)


def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


# --------------------------------------------------------------------------- parity

def test_official_state_dict_names(tiny):
    ours = set(tiny.state_dict())
    official = set(fixture_state())
    assert ours == official
    assert tiny.num_ws == 8


def test_mapping_parity(tiny, ref):
    z = ref["z"].float()
    assert maxdiff(tiny.mapping(z), ref["ws"]) <= 1e-4
    assert maxdiff(tiny.mapping(z, truncation_psi=0.7), ref["ws_psi07"]) <= 1e-4
    assert maxdiff(tiny.mapping.w_avg, ref["w_avg"]) == 0


@pytest.mark.parametrize("fused", [False, True], ids=["shared-weight", "grouped-conv"])
def test_image_parity(tiny, ref, fused):
    tiny.set_fused_modconv(fused)
    try:
        z = ref["z"].float()
        img = tiny(z)
        img07 = tiny(z, truncation_psi=0.7)
        none = tiny.synthesis(ref["ws"], noise_mode="none")
    finally:
        tiny.set_fused_modconv(False)
    assert img.abs().max() > 1  # official range, unclamped
    d = maxdiff(img, ref["img"]), maxdiff(img07, ref["img_psi07"]), maxdiff(none, ref["img_noise_none"])
    assert max(d) <= 1e-4, d
    # the test can fail: the non-EMA generator's output is far away, and noise matters
    assert maxdiff(img, ref["img_from_G_not_ema"]) > 0.1
    assert maxdiff(none, ref["img"]) > 1e-3


def test_uint8_conversion(tiny, ref):
    u8 = to_uint8(tiny.synthesis(ref["ws"]))
    assert u8.dtype == torch.uint8 and u8.shape == ref["img_uint8"].shape
    diff = (u8.int() - ref["img_uint8"].int()).abs()
    assert diff.max() <= 1  # truncation at a .0 boundary may flip by one
    assert (diff == 0).float().mean() >= 0.999


def test_jacobian_in_w_parity_float64(tiny):
    jac = np.load(DATA / "jac.npz")
    g64 = Generator(**TINY_KWARGS)
    g64.load_state_dict(fixture_state())
    g64 = g64.double().eval().requires_grad_(False)
    w = torch.from_numpy(jac["w"])

    def f(w):  # one w fed to all 8 style slots, constant noise
        return g64.synthesis(w.reshape(1, 1, -1).expand(1, g64.num_ws, -1))[0]

    assert maxdiff(f(w), torch.from_numpy(jac["img_f64"])) <= 1e-10
    J = jacfwd(f)(w)  # forward mode: vmap over jvp
    ref64 = torch.from_numpy(jac["jac_f64"])
    rel = ((J - ref64).abs().max() / ref64.abs().max()).item()
    assert rel <= 1e-4, rel
    # the float32 reference, computed by the unmodified official float32 code, is close too
    rel32 = ((J - torch.from_numpy(jac["jac_f32"]).double()).abs().max() / ref64.abs().max()).item()
    assert rel32 <= 1e-3, rel32


# --------------------------------------------------------------------------- other configurations

SMALL = dict(z_dim=32, w_dim=32, img_resolution=16, channel_base=256, channel_max=16, mapping_layers=2,
             perturb=0.1, seed=1)
CONFIGS = {
    "res16-skip": {},
    "res8-512d": dict(z_dim=512, w_dim=512, img_resolution=8, channel_base=64, channel_max=8),
    "res64-varying-channels": dict(img_resolution=64, channel_base=256, channel_max=16),  # 16,16,16,8,4
    "deep-mapping": dict(mapping_layers=8),
    "resnet": dict(architecture="resnet"),
    "orig": dict(architecture="orig"),
    "conditional": dict(c_dim=5),
    "conv-clamp": dict(conv_clamp=0.5),
    "gray": dict(img_channels=1),
    "fp16-snapshot": dict(num_fp16_res=2, conv_clamp=256),
}


def small(space="w", dtype="float32", **over):
    cfg = {**SMALL, **over.pop("cfg", {})}
    if cfg.get("c_dim"):
        over.setdefault("class_idx", 2)
    return StyleGAN2Generator(random_init=cfg, space=space, dtype=dtype, **over)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_shapes_and_modes(name):
    cfg = CONFIGS[name]
    g = small(cfg=cfg)
    r = cfg.get("img_resolution", 16)
    assert g.image_shape == (cfg.get("img_channels", 3), r, r)
    assert g.num_ws == 2 * int(np.log2(r)) - 2
    x = g.sample_latents(0, [0, 1])
    assert x.shape == (2, g.latent_dim) and x.dtype == torch.float32
    y = g(x)
    assert y.shape == (2, *g.image_shape) and torch.isfinite(y).all()
    assert not torch.allclose(y[0], y[1])
    # forward mode == reverse mode on random projections: u·(J v) = (Jᵀu)·v
    torch.manual_seed(0)
    v, u = torch.randn_like(x[:1]), torch.randn_like(y[:1])
    _, jv = jvp(g, (x[:1],), (v,))
    _, pull = vjp(g, x[:1])
    (jtu,) = pull(u)
    a, b = (u * jv).sum().item(), (jtu * v).sum().item()
    assert abs(a - b) <= 1e-4 * (abs(a) + abs(b)) + 1e-6
    json.dumps(g.info())


def test_forward_vs_reverse_full_jacobian():
    g = small(cfg=dict(img_resolution=8, architecture="resnet", c_dim=3), dtype="float64")
    x = g.sample_latents(3, [7]).double()
    f = lambda x: g(x[None])[0]  # noqa: E731
    jf, jr = jacfwd(f)(x[0]), jacrev(f)(x[0])
    assert jf.shape == (3, 8, 8, 32)
    assert maxdiff(jf, jr) <= 1e-10 * jr.abs().max().item()
    # vmap over jvp with a batch of tangents (the engine's pattern) agrees as well
    tang = torch.eye(32, dtype=torch.float64)[:5]
    cols = torch.vmap(lambda t: jvp(f, (x[0],), (t,))[1])(tang)
    assert maxdiff(cols, jf.movedim(-1, 0)[:5]) <= 1e-12


@pytest.mark.parametrize("name", ["res16-skip", "resnet", "conditional", "conv-clamp"])
def test_float64_matches_float32(name):
    cfg = CONFIGS[name]
    g32, g64 = small(cfg=cfg), small(cfg=cfg, dtype="float64")
    x = g32.sample_latents(5, [0, 1, 2])
    y32, y64 = g32(x), g64(x.double())
    assert y64.dtype == torch.float64
    assert maxdiff(y32, y64) <= 1e-4 * max(1.0, y64.abs().max().item())


def test_determinism_and_batch_independence():
    a, b = small(), small()
    xa = a.sample_latents(11, [0, 1, 2, 3])
    assert torch.equal(xa, b.sample_latents(11, [0, 1, 2, 3]))
    assert torch.equal(xa[2:3], a.sample_latents(11, [2]))  # row depends on (seed, index) only
    ya = a(xa)
    assert torch.equal(ya, b(xa)) and torch.equal(ya, a(xa))
    assert torch.allclose(ya[1:2], a(xa[1:2]), atol=1e-5)
    assert not torch.equal(small(cfg=dict(seed=2))(xa), ya)


def test_architectures_differ():
    x = small().sample_latents(0, [0])
    ys = {arch: small(cfg=dict(architecture=arch))(x) for arch in ("skip", "resnet", "orig")}
    assert maxdiff(ys["skip"], ys["resnet"]) > 1e-3
    assert maxdiff(ys["skip"], ys["orig"]) > 1e-3
    assert maxdiff(ys["resnet"], ys["orig"]) > 1e-3
    keys = {a: set(small(cfg=dict(architecture=a)).net.state_dict()) for a in ("skip", "resnet", "orig")}
    assert "synthesis.b8.skip.weight" in keys["resnet"] and "synthesis.b8.torgb.weight" in keys["skip"]
    assert not any(".skip." in k for k in keys["orig"]) and "synthesis.b8.torgb.weight" not in keys["orig"]


def test_conv_clamp_bounds_orig_output():
    x = small().sample_latents(0, [0, 1])
    free = small(cfg=dict(architecture="orig"))(x)
    clamped = small(cfg=dict(architecture="orig", conv_clamp=0.05))(x)
    assert free.abs().max() > 0.05
    assert clamped.abs().max() <= 0.05 + 1e-7


def test_conditional_classes():
    x = small(cfg=dict(c_dim=4), class_idx=0).sample_latents(0, [0])
    y0 = small(cfg=dict(c_dim=4), class_idx=0)(x)
    y3 = small(cfg=dict(c_dim=4), class_idx=3)(x)
    assert torch.equal(y0, small(cfg=dict(c_dim=4), class_idx=0)(x))
    z = small(space="z", cfg=dict(c_dim=4), class_idx=0).sample_latents(0, [0])
    assert maxdiff(small(space="z", cfg=dict(c_dim=4), class_idx=0)(z),
                   small(space="z", cfg=dict(c_dim=4), class_idx=3)(z)) > 1e-3
    assert y0.shape == y3.shape
    with pytest.raises(GeneratorError, match="class_idx"):
        StyleGAN2Generator(random_init={**SMALL, "c_dim": 4})  # no class given
    with pytest.raises(GeneratorError, match="class_idx"):
        small(class_idx=1)  # unconditional model


def test_noise_modes():
    x = small().sample_latents(0, [0])
    assert maxdiff(small(noise="const")(x), small(noise="none")(x)) > 1e-4
    with pytest.raises(GeneratorError, match="noise"):
        small(noise="random")


def test_spaces_truncation_and_wplus():
    gz = small(space="z", truncation=0.7, truncation_cutoff=3)
    gw = small(space="w", truncation=0.7, truncation_cutoff=3)
    z, w = gz.sample_latents(4, [0, 1]), gw.sample_latents(4, [0, 1])
    official = gz.net(z, truncation_psi=0.7, truncation_cutoff=3)  # G(z, ψ, cutoff)
    assert maxdiff(gz(z), official) <= 1e-5
    assert maxdiff(gw(w), official) <= 1e-4  # x = truncated w; slots >= cutoff untruncated
    ws = gw.mapping(z.double().float())
    assert maxdiff(ws[:, 0], w) <= 1e-6 and maxdiff(ws[:, 5], w) > 1e-3
    # wplus: x replaces the chosen slots only; the anchor keeps the rest
    gp = small(space="wplus", layers=[2, 3])
    anchor, x = gp.sample_latents(0, [0]), gp.sample_latents(0, [1])
    manual = anchor[:, None].repeat(1, gp.num_ws, 1)
    manual[:, 2:4] = x[:, None]
    assert maxdiff(gp(x, anchor), gp.synthesize_ws(manual)) <= 1e-6
    assert maxdiff(gp(anchor, anchor), small()(anchor)) <= 1e-6
    assert gp.modulation_layers() == ["b8.conv1", "b16.conv0"]  # slots: b4.conv1 0, b8.conv0 1, …
    assert gp.modulation_weights().shape == (16 + 16, 32)
    assert gp.modulation_layers([1], include_torgb=True) == ["b4.torgb", "b8.conv0"]
    assert gp.modulation_weights([1], include_torgb=True).shape == (16 + 16, 32)
    with pytest.raises(GeneratorError, match="layers"):
        small(space="wplus", layers=[gp.num_ws])


def test_registry_and_validation():
    g = build_generator("stylegan2", {"random_init": SMALL, "space": "z"})
    assert isinstance(g, StyleGAN2Generator) and g.latent_dim == 32
    with pytest.raises(GeneratorError, match="unknown parameters"):
        build_generator("stylegan2", {"random_init": SMALL, "psi": 0.5})
    with pytest.raises(GeneratorError, match="exactly one"):
        build_generator("stylegan2", {})
    with pytest.raises(GeneratorError, match="random_init"):
        build_generator("stylegan2", {"random_init": {**SMALL, "img_resolution": 24}})
    with pytest.raises(GeneratorError, match="not found"):
        build_generator("stylegan2", {"checkpoint": "/nonexistent/network.pkl"})
