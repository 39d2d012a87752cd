"""Conformance suite: every generator adapter must pass these (DESIGN.md §9, zarr's StoreTests).

Adapters under test: the synthetic generator, StyleGAN2 (random weights; w and W+ with a
layer subset), BigGAN (random weights written in the package's checkpoint format), DCGAN
(random weights) and a
``kind: module`` user generator (``tiny_module_gen.py``).  Each is built from a job spec
with :func:`lrgan_dist.apply.build.make_generator`, as the pipeline does.

Run your own adapter through it by adding a ``CASES`` entry.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from lrgan_dist.apply.build import make_generator
from lrgan_dist.core.jacobian import jacobian, pool_image
from lrgan_dist.spec import parse_spec

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # tiny_module_gen for kind: module
    sys.path.insert(0, str(HERE))

SG2 = dict(z_dim=32, w_dim=32, img_resolution=16, channel_base=256, channel_max=16, mapping_layers=2,
           perturb=0.1, seed=1)

# name -> (generator section, latent section); "{biggan}" is replaced by the checkpoint dir.
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "synthetic": ({"kind": "synthetic", "params": {"latent_dim": 32, "resolution": 32, "seed": 0}}, {}),
    "stylegan2-w": ({"kind": "stylegan2", "params": {"random_init": SG2}}, {"space": "w", "truncation": 0.8}),
    "stylegan2-wplus": ({"kind": "stylegan2", "params": {"random_init": SG2}}, {"space": "wplus", "layers": [2, 3]}),
    "biggan": ({"kind": "biggan", "params": {"checkpoint": "{biggan}", "classes": "sample"}}, {"truncation": 0.5}),
    "dcgan": ({"kind": "dcgan", "params": {"random_init": {"seed": 0}, "nz": 24, "ngf": 8}}, {}),
    "module": ({"kind": "module", "params": {"factory": "tiny_module_gen:make",
                                              "kwargs": {"latent_dim": 8, "resolution": 16, "seed": 3}}}, {}),
}


@pytest.fixture(scope="module")
def biggan_dir(tmp_path_factory) -> Path:
    from lrgan_dist.generators.biggan import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("biggan") / "ckpt", seed=0)


def _spec(name: str, biggan_dir: Path):
    gen, latent = copy.deepcopy(CASES[name])
    if gen["params"].get("checkpoint") == "{biggan}":
        gen["params"]["checkpoint"] = str(biggan_dir)
    return parse_spec({"generator": gen, "latent": latent, "regions": {"all": {"box": [0, 0, 1, 1]}},
                       "samples": {"count": 4, "seed": 7}})


@pytest.fixture(scope="module", params=list(CASES))
def case(request, biggan_dir):
    spec = _spec(request.param, biggan_dir)
    return request.param, spec, make_generator(spec)


# --------------------------------------------------------------------------- latents


def test_protocol_attributes(case):
    name, spec, G = case
    d = G.latent_dim
    assert isinstance(d, int) and d >= 1
    C, H, W = G.image_shape
    assert all(isinstance(s, int) and s >= 1 for s in (C, H, W))
    lo, hi = G.image_range
    assert lo < hi
    info = G.info()
    assert json.loads(json.dumps(info)) == info  # JSON-able for the store's attributes


def test_latents_deterministic_in_seed_and_index(case):
    name, spec, G = case
    idx = [0, 1, 2, 5, 9]
    x = G.sample_latents(3, idx)
    assert x.dtype == torch.float32 and tuple(x.shape) == (len(idx), G.latent_dim)
    assert torch.isfinite(x).all()
    again = G.sample_latents(3, idx)
    assert torch.equal(x, again)
    singles = torch.cat([G.sample_latents(3, [i]) for i in idx])
    assert torch.equal(x, singles)  # not dependent on the batch
    rev = G.sample_latents(3, idx[::-1])
    assert torch.equal(x, rev.flip(0))  # not dependent on the order
    assert not torch.equal(x, G.sample_latents(4, idx))  # the seed matters
    assert len({tuple(r.tolist()) for r in x}) == len(idx)  # the index matters
    assert tuple(G.sample_latents(3, []).shape) == (0, G.latent_dim)


def test_latents_identical_in_a_fresh_replica(case, biggan_dir):
    name, spec, G = case
    G2 = make_generator(_spec(name, biggan_dir))
    assert torch.equal(G.sample_latents(11, [0, 4]), G2.sample_latents(11, [0, 4]))


# --------------------------------------------------------------------------- forward


def test_forward_shapes_dtype_range(case):
    name, spec, G = case
    x = G.sample_latents(0, range(3))
    with torch.no_grad():
        y = G.forward(x, x)
        y_noanchor = G.forward(x)
    assert tuple(y.shape) == (3, *G.image_shape) and y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert torch.equal(y, y_noanchor)  # anchor defaults to x
    lo, hi = G.image_range
    span = hi - lo
    inside = ((y >= lo - span) & (y <= hi + span)).float().mean().item()
    assert inside >= 0.95, inside  # roughly in range (random weights overshoot a little)
    assert y.std() > 1e-4  # not constant


def test_forward_is_samplewise(case):
    name, spec, G = case
    x = G.sample_latents(1, range(4))
    with torch.no_grad():
        y = G.forward(x, x)
        rows = torch.cat([G.forward(x[i:i + 1], x[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(y, rows, rtol=1e-5, atol=1e-5)


def test_float64_matches_float32(case):
    name, spec, G = case
    x = G.sample_latents(2, range(2))
    G64 = copy.deepcopy(G).to(torch.float64)
    with torch.no_grad():
        y32 = G.forward(x, x)
        y64 = G64.forward(x.double(), x.double())
    assert y64.dtype == torch.float64
    scale = y64.abs().max().item()
    assert (y32.double() - y64).abs().max().item() <= 1e-4 * max(scale, 1.0)


def test_forward_mode_jacobian_matches_reverse_mode(case):
    name, spec, G = case
    x = G.sample_latents(5, range(2))
    anchor = x.clone()

    def f(z):  # small pooled output: [n, 1, 4, 4]
        return pool_image(G.forward(z, anchor), (4, 4), "mean")

    y, J = jacobian(f, x, chunk=8)  # forward mode: vmap over jvp
    Jr = torch.autograd.functional.jacobian(f, x)  # reverse mode: [n, 1, 4, 4, n, d]
    Jr = torch.stack([Jr[i, ..., i, :] for i in range(x.shape[0])])
    assert J.shape == Jr.shape == (2, 1, 4, 4, G.latent_dim)
    rel = ((J - Jr).abs().max() / Jr.abs().max()).item()
    assert rel <= 1e-4, rel
    assert Jr.abs().max() > 0
    torch.testing.assert_close(y, f(x), rtol=1e-5, atol=1e-6)


def test_engine_jacobian_no_fallback(case):
    """The production path: JacobianEngine.compute(x, masks) uses vmap(jvp) without falling back."""
    import warnings

    from lrgan_dist.core.jacobian import JacobianConfig, JacobianEngine

    name, spec, G = case
    eng = JacobianEngine(G, JacobianConfig(grid=(8, 8), chunk=8))
    x = G.sample_latents(0, range(2))
    m = torch.zeros(1, 8, 8)
    m[:, 2:5, 2:6] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = eng.compute(x, m)
    assert out["finite"].all()
    assert out["gram_in"].shape == (2, 1, G.latent_dim, G.latent_dim)


# --------------------------------------------------------------------------- devices


def test_cpu_device_move(case):
    name, spec, G = case
    x = G.sample_latents(0, [0, 1])
    with torch.no_grad():
        ref = G.forward(x, x)
        G2 = copy.deepcopy(G).to("cpu")
        assert torch.equal(G2.forward(x, x), ref)
        assert torch.equal(G2.forward(x.to("cpu"), x.to("cpu")), ref)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_device_move(case):
    name, spec, G = case
    x = G.sample_latents(0, [0, 1])
    with torch.no_grad():
        ref = G.forward(x, x)
        Gc = copy.deepcopy(G).to("cuda")
        y = Gc.forward(x.cuda(), x.cuda())
    assert y.device.type == "cuda"
    torch.testing.assert_close(y.cpu(), ref, rtol=1e-3, atol=1e-3)


# --------------------------------------------------------------------------- Ray replicas


class _Replica:
    """A generator replica built from the spec inside a Ray actor (as the pipeline does)."""

    def __init__(self, spec: Any, path: str) -> None:
        import sys

        import torch

        if path not in sys.path:
            sys.path.insert(0, path)
        torch.set_num_threads(1)
        from lrgan_dist.apply.build import make_generator

        self.g = make_generator(spec)

    def probe(self, x: Any) -> tuple[dict, Any, Any]:
        import torch

        with torch.no_grad():
            y = self.g.forward(x, x)
        return self.g.info(), y, self.g.sample_latents(7, [0, 1])


@pytest.fixture(scope="module")
def ray_local():
    from ray import cloudpickle  # Ray's own copy pickles the actor class

    from lrgan_dist.pipeline.runtime import ray_session

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test module is not importable there
    try:
        with ray_session(num_cpus=2) as ray:
            yield ray
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_replica_in_ray_actor_matches_driver(case, ray_local):
    name, spec, G = case
    ray = ray_local
    x = G.sample_latents(7, [0, 1])
    actor = ray.remote(num_cpus=1)(_Replica).remote(spec, str(HERE))
    try:
        info, y, xr = ray.get(actor.probe.remote(x), timeout=300)
    finally:
        ray.kill(actor)
    assert info == json.loads(json.dumps(G.info()))
    assert torch.equal(xr, x)
    with torch.no_grad():
        ref = G.forward(x, x)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
