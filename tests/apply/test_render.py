"""``lrgan_dist.apply.render``: the library behind ``lrgan-dist render`` (DESIGN.md §5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrgan_dist.apply.build import make_generator
from lrgan_dist.apply.render import load_latents, parse_seeds, render
from lrgan_dist.generators.base import GeneratorError, latent_rng
from lrgan_dist.spec import SpecError, parse_spec

SG2 = dict(z_dim=32, w_dim=32, img_resolution=16, channel_base=256, channel_max=16, mapping_layers=2,
           perturb=0.1, seed=1)


def spec_of(generator, latent=None, seed=5, count=4):
    return parse_spec({"generator": generator, "latent": latent or {}, "samples": {"count": count, "seed": seed},
                       "regions": {"all": {"box": [0, 0, 1, 1]}}, "compute": {"device": "cpu"}})


SYN = spec_of({"kind": "synthetic", "params": {"latent_dim": 32, "resolution": 32}})
SG2_WPLUS = spec_of({"kind": "stylegan2", "params": {"random_init": SG2}},
                    {"space": "wplus", "layers": [2, 3], "truncation": 0.7})


@pytest.mark.parametrize("text, want", [
    ("0-7", range(0, 8)), ("5", range(5, 6)), (" 2 - 4 ", range(2, 5)), ("0,3,10-12", [0, 3, 10, 11, 12]),
])
def test_parse_seeds(text, want):
    assert parse_seeds(text) == want


@pytest.mark.parametrize("text", ["", "a", "3-1", "-1", "1-2-3", "1,,2", "1,1", "0-3,2"])
def test_parse_seeds_errors(text):
    with pytest.raises(SpecError, match="--seeds"):
        parse_seeds(text)


def test_render_seeds_reproduces_the_job_samples(tmp_path):
    out = tmp_path / "sub" / "r.npz"
    res = render(SYN, seeds=range(1, 4), out=out)
    assert res["n"] == 3 and res["seeds"] == [1, 2, 3] and res["finite"]
    assert res["image_shape"] == [3, 32, 32] and res["image_range"] == [-1.0, 1.0]
    with np.load(out, allow_pickle=False) as z:
        images, latents, seeds = z["images"], z["latents"], z["seeds"]
        assert int(z["samples_seed"]) == 5
        assert list(z["image_range"]) == [-1.0, 1.0]
    G = make_generator(SYN)
    x = G.sample_latents(5, [1, 2, 3])
    assert images.dtype == np.float32 and images.shape == (3, 3, 32, 32)
    assert np.array_equal(latents, x.numpy()) and seeds.tolist() == [1, 2, 3]
    with torch.no_grad():
        np.testing.assert_allclose(images, G.forward(x, x).numpy(), rtol=0, atol=1e-6)


def test_render_default_is_all_samples_and_name_is_kept(tmp_path):
    out = tmp_path / "images"  # no .npz suffix: written exactly there
    res = render(SYN, out=out)
    assert res["n"] == 4 and out.exists() and not (tmp_path / "images.npz").exists()
    with np.load(out) as z:
        assert z["seeds"].tolist() == [0, 1, 2, 3]


def test_render_latent_file_in_another_space(tmp_path):
    """A W+ StyleGAN2 job renders z and w files; z of sample i gives sample i's image."""
    seeds_out = render(SG2_WPLUS, seeds=range(2), out=tmp_path / "a.npz")
    z = np.stack([latent_rng(5, i).standard_normal(32) for i in range(2)]).astype(np.float32)
    rz = render(SG2_WPLUS, latents=z, space="z", out=tmp_path / "z.npz")
    assert rz["space"] == "z" and rz["seeds"] is None
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "z.npz") as b:
        np.testing.assert_allclose(b["images"], a["images"], rtol=0, atol=1e-4)
        w = a["latents"]  # the job's analysed latents (truncated w)
        assert b["seeds"].tolist() == [-1, -1] and str(b["space"]) == "z"
    rw = render(SG2_WPLUS, latents=w, space="w", out=tmp_path / "w.npz")
    assert rw["space"] == "w"
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "w.npz") as c:
        np.testing.assert_allclose(c["images"], a["images"], rtol=0, atol=1e-5)
    assert seeds_out["space"] == "wplus"


def test_render_errors(tmp_path):
    out = tmp_path / "x.npz"
    with pytest.raises(SpecError, match="both"):
        render(SYN, seeds=range(2), latents=np.zeros((1, 32)), out=out)
    with pytest.raises(SpecError, match="--space"):
        render(SYN, seeds=range(2), space="z", out=out)
    with pytest.raises(SpecError, match="--space"):
        render(SG2_WPLUS, latents=np.zeros((1, 32)), space="q", out=out)
    with pytest.raises(SpecError, match=r"expected \[n, 32\]"):
        render(SYN, latents=np.zeros((2, 7), dtype=np.float32), out=out)
    with pytest.raises(SpecError, match="non-finite"):
        render(SYN, latents=np.full((1, 32), np.nan), out=out)
    with pytest.raises(SpecError, match="float latents"):
        render(SYN, latents=np.zeros((1, 32), dtype=np.int64), out=out)
    with pytest.raises(SpecError, match="non-negative"):
        render(SYN, seeds=[-1], out=out)
    with pytest.raises((GeneratorError, SpecError)):  # synthetic has no 'w' space
        render(SYN, latents=np.zeros((1, 32), dtype=np.float32), space="w", out=out)
    assert not out.exists()


def test_load_latents(tmp_path):
    np.save(tmp_path / "z.npy", np.ones((2, 32), dtype=np.float32))
    assert load_latents(tmp_path / "z.npy").shape == (2, 32)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(SpecError, match="without pickle"):
        load_latents(tmp_path / "obj.npy")
    np.savez(tmp_path / "a.npz", z=np.ones(3))
    with pytest.raises(SpecError, match="npz"):
        load_latents(tmp_path / "a.npz")
    with pytest.raises(SpecError, match="does not exist"):
        load_latents(tmp_path / "nope.npy")
