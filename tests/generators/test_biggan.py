"""BigGAN adapter: checkpoint loading, parity with the package, latents, classes, forward mode."""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pkg = pytest.importorskip("pytorch_pretrained_biggan")

from lrgan_dist.core.jacobian import JacobianConfig, JacobianEngine, jacobian  # noqa: E402
from lrgan_dist.generators.base import GeneratorError, build_generator, latent_rng  # noqa: E402
from lrgan_dist.generators.biggan import (  # noqa: E402
    CONFIG_NAME,
    WEIGHTS_NAME,
    check_config,
    make_biggan,
    truncated_normal,
    write_random_checkpoint,
)

# 64×64, channel_width 8, 10 classes; attention at 32×32 as in the real models' layout.
CFG64 = dict(output_dim=64, z_dim=16, class_embed_dim=16, channel_width=8, num_classes=10,
             layers=[[False, 16, 16], [True, 16, 16], [True, 16, 8], [False, 8, 4], [True, 4, 2], [True, 2, 1]],
             attention_layer_position=4, eps=1e-4, n_stats=51)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("bg") / "ckpt", seed=1, **CFG64)


def package_model(ckpt: Path):
    """The package's own loader (plain torch.load of our own test file: fine here)."""
    return pkg.BigGAN.from_pretrained(str(ckpt)).eval()


def onehot(cls, k=10):
    return torch.nn.functional.one_hot(torch.as_tensor(cls), k).float()


# --------------------------------------------------------------------------- loading


def test_checkpoint_layout_and_build(ckpt):
    assert sorted(p.name for p in ckpt.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    G = build_generator("biggan", {"checkpoint": str(ckpt)})
    assert G.image_shape == (3, 64, 64) and G.latent_dim == 16 and G.image_range == (-1.0, 1.0)
    assert G.truncation == 0.4 and G.classes == 0
    info = G.info()
    assert json.loads(json.dumps(info)) == info
    assert info["checkpoint"]["format"] == "pytorch-pretrained-biggan"
    assert len(info["checkpoint"]["weights_sha256"]) == 64


@pytest.mark.parametrize("trunc", [0.4, 1.0, 0.73])
def test_parity_with_package(ckpt, trunc):
    ref = package_model(ckpt)
    G = make_biggan(checkpoint=str(ckpt), truncation=trunc, classes=[3, 7])
    x = G.sample_latents(0, range(4))
    cls = G.class_of(x)
    assert set(cls) <= {3, 7}
    with torch.no_grad():
        ours = G(x, x)
        theirs = ref(x, onehot(cls), trunc)
    assert torch.equal(ours, theirs)


def test_random_checkpoint_is_deterministic(tmp_path):
    a = write_random_checkpoint(tmp_path / "a", seed=3)
    b = write_random_checkpoint(tmp_path / "b", seed=3)
    c = write_random_checkpoint(tmp_path / "c", seed=4)
    sa, sb, sc = (torch.load(p / WEIGHTS_NAME, weights_only=True) for p in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert all(torch.isfinite(v).all() for v in sa.values() if v.is_floating_point())


def test_weights_only_loading_refuses_code(tmp_path, ckpt):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    d = tmp_path / "evil"
    d.mkdir()
    (d / CONFIG_NAME).write_text((ckpt / CONFIG_NAME).read_text())
    torch.save({"generator.gen_z.weight_orig": Evil()}, d / WEIGHTS_NAME)
    with pytest.raises(GeneratorError, match="weights-only"):
        make_biggan(checkpoint=str(d))
    assert not marker.exists()


def test_checkpoint_errors(tmp_path, ckpt):
    with pytest.raises(GeneratorError, match="does not exist"):
        make_biggan(checkpoint=str(tmp_path / "nope"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(GeneratorError, match="it is a file"):
        make_biggan(checkpoint=str(tmp_path / "file"))
    d = tmp_path / "half"
    d.mkdir()
    (d / CONFIG_NAME).write_text((ckpt / CONFIG_NAME).read_text())
    with pytest.raises(GeneratorError, match=f"missing {WEIGHTS_NAME}"):
        make_biggan(checkpoint=str(d))
    (d / WEIGHTS_NAME).write_bytes((ckpt / WEIGHTS_NAME).read_bytes())
    (d / CONFIG_NAME).write_text("{not json")
    with pytest.raises(GeneratorError, match="not valid JSON"):
        make_biggan(checkpoint=str(d))
    # a config that disagrees with the weights: every mismatch is reported, nothing is half-loaded
    (d / CONFIG_NAME).write_text(json.dumps({**CFG64, "channel_width": 16}))
    with pytest.raises(GeneratorError, match="shape mismatches"):
        make_biggan(checkpoint=str(d))
    (d / CONFIG_NAME).write_text(json.dumps({**CFG64, "num_classes": 12}))
    with pytest.raises(GeneratorError, match="does not match"):
        make_biggan(checkpoint=str(d))
    sd = torch.load(ckpt / WEIGHTS_NAME, weights_only=True)
    sd.pop("generator.gen_z.weight_orig")
    torch.save(sd, d / WEIGHTS_NAME)
    (d / CONFIG_NAME).write_text(json.dumps(CFG64))
    with pytest.raises(GeneratorError, match="missing 1 keys"):
        make_biggan(checkpoint=str(d))
    with pytest.raises(GeneratorError, match="expected the path"):
        make_biggan()


@pytest.mark.parametrize("change, match", [
    ({"output_dim": 128}, "output_dim 128 does not match"),
    ({"layers": [[False, 8, 8]]}, "does not match the previous output"),
    ({"layers": [[False, 16, 4], [True, 4, 1]]}, "keep or halve"),
    ({"layers": [[True, 16, 8], [True, 8, 4], [True, 8, 2]]}, "does not match the previous output"),
    ({"layers": [[True, 16, 16], [True, 16, 8]]}, "last block must output 1"),
    ({"channel_width": 2}, "channel_width"),
    ({"z_dim": 0}, "z_dim"),
    ({"layers": "abc"}, "layers"),
])
def test_config_validation(change, match):
    with pytest.raises(GeneratorError, match=match):
        check_config({**CFG64, **change})
    cfg = dict(CFG64)
    cfg.pop("n_stats")
    with pytest.raises(GeneratorError, match="missing keys"):
        check_config(cfg)


@pytest.mark.parametrize("params, match", [
    ({"truncation": 0.0}, "truncation"),
    ({"truncation": 1.5}, "truncation"),
    ({"classes": 10}, "0..9"),
    ({"classes": [1, 11]}, "out of range"),
    ({"classes": []}, "classes"),
    ({"classes": "random"}, "classes"),
    ({"space": "w"}, "only the latent space 'z'"),
    ({"layers": [1]}, "no W\\+ layers"),
    ({"dtype": "float16"}, "dtype"),
    ({"bogus": 1}, "unknown parameters"),
])
def test_parameter_errors(ckpt, params, match):
    with pytest.raises(GeneratorError, match=match):
        make_biggan(checkpoint=str(ckpt), **params)


# --------------------------------------------------------------------------- latents


def test_truncated_normal_semantics():
    v = np.concatenate([truncated_normal(latent_rng(0, i), 128, 1.0) for i in range(200)])
    assert np.abs(v).max() <= 2.0
    stats = pytest.importorskip("scipy.stats")
    # same distribution as the package's truncated_noise_sample (scipy truncnorm(-2, 2))
    assert stats.kstest(v, stats.truncnorm(-2, 2).cdf).pvalue > 1e-3
    w = truncated_normal(latent_rng(0, 0), 128, 0.4)
    assert np.array_equal(w, 0.4 * truncated_normal(latent_rng(0, 0), 128, 1.0))


def test_sample_latents_follow_seed_index_and_truncation(ckpt):
    G = make_biggan(checkpoint=str(ckpt), truncation=0.5)
    x = G.sample_latents(2, [4, 1])
    assert x.dtype == torch.float32 and x.shape == (2, 16)
    assert x.abs().max() <= 1.0 + 1e-6
    want = truncated_normal(latent_rng(2, 4), 16, 0.5)
    assert np.array_equal(x[0].numpy(), want.astype(np.float32))
    G2 = make_biggan(checkpoint=str(ckpt), truncation=0.25)
    assert torch.allclose(G2.sample_latents(2, [4]), x[:1] / 2)


# --------------------------------------------------------------------------- classes


def test_class_modes(ckpt):
    x = make_biggan(checkpoint=str(ckpt)).sample_latents(0, range(40))
    fixed = make_biggan(checkpoint=str(ckpt), classes=5)
    assert fixed.class_of(x) == [5] * 40
    lst = make_biggan(checkpoint=str(ckpt), classes=[2, 9])
    c = lst.class_of(x)
    assert set(c) == {2, 9}
    samp = make_biggan(checkpoint=str(ckpt), classes="sample")
    cs = samp.class_of(x)
    assert len(set(cs)) >= 6 and all(0 <= k < 10 for k in cs)
    # a pure function of the sample's latent: batch, order, dtype and replica do not matter
    assert samp.class_of(x.flip(0)) == cs[::-1]
    assert samp.class_of(x[7:8]) == [cs[7]]
    assert samp.class_of(x.double()) == cs
    assert samp.class_of(x.numpy()) == cs
    assert make_biggan(checkpoint=str(ckpt), classes="sample").class_of(x) == cs


def test_class_follows_the_anchor(ckpt):
    """forward(x', anchor=x) renders x' with x's class: edits keep the sample's class."""
    G = make_biggan(checkpoint=str(ckpt), classes="sample")
    ref = package_model(ckpt)
    x = G.sample_latents(0, range(6))
    cls = G.class_of(x)
    x2 = x + 0.05 * torch.randn_like(x)
    with torch.no_grad():
        y = G(x2, x)
        want = ref(x2, onehot(cls), G.truncation)
        other = ref(x2, onehot([(c + 1) % 10 for c in cls]), G.truncation)
    assert torch.equal(y, want)
    assert (y - other).abs().max() > 1e-3  # the class matters


def test_float64_dtype_param(ckpt):
    G32 = make_biggan(checkpoint=str(ckpt), classes="sample")
    G64 = make_biggan(checkpoint=str(ckpt), classes="sample", dtype="float64")
    x = G32.sample_latents(0, range(3))
    with torch.no_grad():
        y32, y64 = G32(x, x), G64(x.double(), x.double())
    assert y64.dtype == torch.float64
    assert (y32.double() - y64).abs().max() < 1e-5


# --------------------------------------------------------------------------- forward mode


def test_forward_mode_vmap_loop_reverse_agree(ckpt):
    G = make_biggan(checkpoint=str(ckpt), classes="sample", dtype="float64")
    x = G.sample_latents(1, range(2)).double()
    a = x.clone()

    def f(z):
        return G(z, a)[:, :, ::16, ::16]  # [2, 3, 4, 4]

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # vmap must not fall back
        _, Jv = jacobian(f, x, chunk=16)
    _, Jl = jacobian(f, x, chunk=5, vectorize=False)
    Jr = torch.autograd.functional.jacobian(f, x)
    Jr = torch.stack([Jr[i, ..., i, :] for i in range(2)])
    scale = Jr.abs().max()
    assert scale > 0
    assert (Jv - Jr).abs().max() / scale < 1e-10
    assert (Jl - Jr).abs().max() / scale < 1e-10


def test_engine_path_and_no_state_updates(ckpt):
    G = make_biggan(checkpoint=str(ckpt), classes="sample")
    before = {k: v.clone() for k, v in G.state_dict().items()}
    eng = JacobianEngine(G, JacobianConfig(grid=(16, 16), chunk=8))
    x = G.sample_latents(0, range(3))
    m = torch.zeros(1, 16, 16)
    m[0, 4:8, 4:12] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = eng.compute(x, m, anchor=x)
    assert out["finite"].all()
    with torch.no_grad():
        torch.testing.assert_close(out["images"], G(x, x), rtol=1e-5, atol=1e-6)
    after = G.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # spectral norm u, v untouched
    assert not G.training


def test_without_anchor_and_vmap_over_samples(ckpt):
    """Under jvp the primal x is concrete, so the anchor may be omitted; vmapping over samples
    (a batched x or anchor has no values to hash) raises a clear error."""
    G = make_biggan(checkpoint=str(ckpt), classes="sample")
    x = G.sample_latents(0, range(2))
    a = x.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _, J0 = jacobian(lambda z: G(z)[:, :, ::16, ::16], x, chunk=8)
    _, J1 = jacobian(lambda z: G(z, a)[:, :, ::16, ::16], x, chunk=8)
    torch.testing.assert_close(J0, J1, rtol=1e-6, atol=1e-8)
    with pytest.raises(GeneratorError, match="pass anchor"):
        torch.func.vmap(lambda z, w: G(z[None], w[None]))(x, a)


def test_missing_package_is_a_clear_error(ckpt, monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_pretrained_biggan", None)  # import now fails
    with pytest.raises(GeneratorError, match="pip install pytorch-pretrained-biggan"):
        make_biggan(checkpoint=str(ckpt))


def test_engine_fallback_to_dual_tensor_loop(ckpt, monkeypatch):
    """If vmap ever fails (it does not today), the engine falls back with a warning to the
    dual-tensor loop, which gives the same Grams through BigGAN."""
    import lrgan_dist.core.jacobian as jac

    G = make_biggan(checkpoint=str(ckpt), classes="sample")
    eng = JacobianEngine(G, JacobianConfig(grid=(8, 8), chunk=8))
    x = G.sample_latents(3, range(2))
    m = torch.zeros(1, 8, 8)
    m[0, 2:5, 2:6] = 1
    ref = eng.compute(x, m)

    def broken(*a, **k):
        raise RuntimeError("simulated vmap failure")

    monkeypatch.setattr(jac, "_jvp_chunk_vmap", broken)
    with pytest.warns(RuntimeWarning, match="falling back"):
        out = eng.compute(x, m)
    for key in ("images", "gram_in", "gram_out"):
        torch.testing.assert_close(out[key], ref[key], rtol=1e-4, atol=1e-7)
