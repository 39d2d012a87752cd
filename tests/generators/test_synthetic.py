"""Tests for the built-in synthetic face generator (DESIGN.md §6).

The acceptance properties of the project (DESIGN.md §1, §6) are checked with a quick
stand-in for LowRankGAN: principal directions P = eigenvectors of M_R with eigenvalue
> 1e-3·max, null space N = eigenvectors of M_B with eigenvalue < 1e-3·max, projected
directions D = normalize_rows(P N Nᵀ).  J is the forward-mode Jacobian of the channel-
mean image on the full 64×64 grid.  Run with ``-s`` to see the measured angles and
leakages.
"""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import jacfwd, jvp, vmap

from lrgan_dist.generators import Generator, GeneratorError, available, build_generator
from lrgan_dist.generators.base import latent_rng
from lrgan_dist.generators.synthetic import DEFAULT_PART_DIMS, SyntheticFaces, make_synthetic

R = 64
D = 64
LOCAL = ("background", "face", "hair", "eyes", "mouth")


# ----------------------------------------------------------------------------- helpers
def jacobian(gen: SyntheticFaces, x: torch.Tensor) -> torch.Tensor:
    """J [R*R, d] of the channel-mean image at one latent x [d] (forward mode)."""
    return jacfwd(lambda z: gen(z[None])[0].mean(0).reshape(-1))(x)


def box_mask(box, r: int = R) -> torch.Tensor:
    y0, x0, y1, x1 = box
    c = (torch.arange(r, dtype=torch.float64) + 0.5) / r
    inside = (c[:, None] >= y0) & (c[:, None] <= y1) & (c[None, :] >= x0) & (c[None, :] <= x1)
    return inside.to(torch.float64).reshape(-1)


def sine_to(v: torch.Tensor, q: torch.Tensor) -> float:
    """Sine of the angle between vector v and the column space of orthonormal q."""
    v = v / v.norm()
    return float((v - q @ (q.T @ v)).norm())


def standin_lowrankgan(j: torch.Tensor, region: torch.Tensor) -> dict[str, torch.Tensor]:
    rest = 1.0 - region
    m_r = j.T @ (region[:, None] * j) / region.sum()
    m_b = j.T @ (rest[:, None] * j) / rest.sum()
    e_r, v_r = torch.linalg.eigh(m_r)
    e_b, v_b = torch.linalg.eigh(m_b)
    keep = e_r > 1e-3 * e_r.max()
    principal = v_r[:, keep].flip(1).T  # rows, strongest first
    null = v_b[:, e_b < 1e-3 * e_b.max()]
    proj = principal @ null @ null.T
    proj = proj / proj.norm(dim=1, keepdim=True)
    energy = torch.einsum("kd,de,ke->k", proj, m_r, proj)
    return {
        "m_r": m_r, "m_b": m_b, "top": e_r.max(), "b_top": e_b.max(), "principal": principal,
        "null": null, "projected": proj, "strong": energy >= 0.01 * e_r.max(),
    }


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def gen() -> SyntheticFaces:
    return make_synthetic()


@pytest.fixture(scope="module")
def gen64() -> SyntheticFaces:
    return make_synthetic().double()


@pytest.fixture(scope="module")
def gt(gen64):
    return {k: v.double() for k, v in gen64.ground_truth_subspaces().items()}


@pytest.fixture(scope="module")
def centred(gen64):
    """Centred faces of standard-normal samples and their Jacobians (float64)."""
    x = gen64.centre(gen64.sample_latents(0, range(4)).double())
    return x, [jacobian(gen64, xi) for xi in x]


@pytest.fixture(scope="module")
def free(gen64):
    """Non-centred samples (faces moved by the layout factor) and their Jacobians."""
    x = gen64.sample_latents(1, range(4)).double()
    return x, [jacobian(gen64, xi) for xi in x]


# ----------------------------------------------------------------------------- protocol
def test_registry_protocol_and_info():
    assert "synthetic" in available()
    g = build_generator("synthetic", {"latent_dim": 32, "resolution": 32, "seed": 3})
    assert isinstance(g, SyntheticFaces) and isinstance(g, Generator)
    assert g.latent_dim == 32 and g.image_shape == (3, 32, 32) and g.image_range == (-1.0, 1.0)
    assert g.PARTS == ("background", "face", "hair", "eyes", "mouth", "layout", "lighting")
    info = json.loads(json.dumps(g.info()))
    assert info["kind"] == "synthetic"
    assert info["params"]["latent_dim"] == 32 and info["params"]["seed"] == 3
    assert {p: v["dims"] for p, v in info["parts"].items()} == DEFAULT_PART_DIMS
    assert info["unused_dims"] == 32 - 24
    # the info params rebuild the same generator
    g2 = build_generator("synthetic", info["params"])
    assert torch.equal(g2.basis, g.basis)


@pytest.mark.parametrize(
    "params, field",
    [
        ({"latent_dim": 20}, "latent_dim"),
        ({"resolution": 8}, "resolution"),
        ({"parts": {"nose": 2}}, "parts"),
        ({"parts": {"eyes": 5}}, "parts.eyes"),
        ({"parts": ["eyes"]}, "parts"),
        ({"edge": 0}, "edge"),
        ({"max_shift": 0.3}, "max_shift"),
        ({"latent_dim": "64"}, "latent_dim"),
    ],
)
def test_bad_params_raise_generator_error(params, field):
    with pytest.raises(GeneratorError, match=field):
        make_synthetic(**params)


def test_part_sizes_are_a_parameter():
    g = make_synthetic(latent_dim=24, parts={"eyes": 2, "layout": 0}, resolution=32)
    sub = g.ground_truth_subspaces()
    assert {p: q.shape[1] for p, q in sub.items()} == {**DEFAULT_PART_DIMS, "eyes": 2, "layout": 0}
    assert g.unused_subspace().shape == (24, 24 - 20)
    x = g.sample_latents(0, range(3))
    assert torch.allclose(g.centre(x), x)  # no layout factor: faces are always centred
    y = g(x)
    assert y.shape == (3, 3, 32, 32) and torch.isfinite(y).all()


# ----------------------------------------------------------------------------- latents
def test_sample_latents_follow_latent_rng(gen):
    x = gen.sample_latents(7, [4, 0, 11])
    assert x.dtype == torch.float32 and x.shape == (3, D)
    for row, i in zip(x, [4, 0, 11]):
        want = latent_rng(7, i).standard_normal(D).astype(np.float32)
        assert np.array_equal(row.numpy(), want)
    assert gen.sample_latents(7, []).shape == (0, D)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    indices=st.lists(st.integers(0, 10**6), min_size=1, max_size=6),
)
def test_latents_independent_of_batching(seed, indices):
    g = make_synthetic(resolution=16)
    whole = g.sample_latents(seed, indices)
    for k, i in enumerate(indices):
        assert torch.equal(whole[k], g.sample_latents(seed, [i])[0])
    # and the images too: a row does not depend on its batch
    y = g(whole)
    for k in range(len(indices)):
        # float32 BLAS rounding depends on the batch shape (measured up to 5e-6)
        assert torch.allclose(y[k], g(whole[k : k + 1])[0], atol=2e-5)


def test_generator_is_deterministic_in_seed():
    a, b, c = make_synthetic(seed=5), make_synthetic(seed=5), make_synthetic(seed=6)
    assert torch.equal(a.basis, b.basis)
    assert not torch.allclose(a.basis, c.basis)
    x = a.sample_latents(0, range(2))
    assert torch.equal(a(x), b(x))


# ----------------------------------------------------------------------------- images
def test_shapes_dtype_and_range(gen):
    x = gen.sample_latents(0, range(32))
    for scale in (1.0, 4.0, 50.0):  # saturated factors stay in range
        y = gen(scale * x)
        assert y.shape == (32, 3, R, R) and y.dtype == torch.float32
        assert torch.isfinite(y).all()
        assert y.min() > -1.0 and y.max() < 1.0
    with pytest.raises(ValueError, match="x"):
        gen(x[0])


@settings(max_examples=8, deadline=None)
@given(resolution=st.integers(16, 48), scale=st.floats(0.0, 5.0))
def test_any_resolution(resolution, scale):
    g = make_synthetic(resolution=resolution)
    y = g(scale * g.sample_latents(1, range(3)))
    assert y.shape == (3, 3, resolution, resolution)
    assert torch.isfinite(y).all() and y.min() > -1.0 and y.max() < 1.0


def test_runs_on_any_device_and_ignores_anchor():
    g = make_synthetic(resolution=32)
    x = g.sample_latents(0, range(2))
    assert torch.equal(g(x, anchor=x + 1.0), g(x))
    # nothing is pinned to the CPU: every tensor follows the module and the input
    gm = make_synthetic(resolution=32).to("meta")
    xm = x.to("meta")
    assert gm(xm).device.type == "meta" and gm(xm).shape == (2, 3, 32, 32)
    assert gm.part_masks(xm, grid=8)["eyes"].device.type == "meta"
    assert gm.centre(xm).device.type == "meta"


def test_float64_follows_input_dtype(gen):
    x = gen.sample_latents(2, range(4))
    y32 = gen(x)
    y64 = gen(x.double())
    assert y64.dtype == torch.float64
    assert torch.allclose(y64.float(), y32, atol=1e-5)
    g64 = make_synthetic().to(torch.float64)
    assert torch.allclose(g64(x.double()), y64, atol=1e-12)


def test_jvp_matches_central_differences(gen64):
    x = gen64.sample_latents(3, range(2)).double()
    torch.manual_seed(0)
    for _ in range(3):
        v = torch.randn_like(x)
        _, tangent = jvp(gen64, (x,), (v,))
        h = 1e-5
        fd = (gen64(x + h * v) - gen64(x - h * v)) / (2 * h)
        rel = (tangent - fd).norm() / fd.norm()
        assert rel < 1e-3, rel
    # jvp in float32 works too
    _, t32 = jvp(make_synthetic(), (x.float(),), (v.float(),))
    assert torch.allclose(t32.double(), tangent, rtol=1e-3, atol=1e-3)


def test_vmap_over_tangents_and_samples(gen64):
    x = gen64.sample_latents(4, range(2)).double()
    eye = torch.eye(D, dtype=torch.float64)
    # batched tangents: one jvp per latent axis, as the Jacobian engine does
    cols = vmap(lambda v: jvp(gen64, (x,), (v.expand_as(x),))[1])(eye)  # [d, n, 3, R, R]
    j0 = jacfwd(lambda z: gen64(z[None])[0])(x[0])  # [3, R, R, d]
    assert torch.allclose(cols[:, 0].permute(1, 2, 3, 0), j0, atol=1e-10)
    # vmap over samples
    y = vmap(lambda xi: gen64(xi[None])[0])(x)
    assert torch.allclose(y, gen64(x), atol=1e-12)


# ----------------------------------------------------------------------------- ground truth
def test_ground_truth_subspaces_orthonormal(gen):
    sub = gen.ground_truth_subspaces()
    assert list(sub) == list(gen.PARTS)
    q = torch.cat([sub[p] for p in gen.PARTS] + [gen.unused_subspace()], 1)
    assert q.dtype == torch.float32 and q.shape == (D, D)
    assert torch.allclose(q.T @ q, torch.eye(D), atol=1e-5)  # orthonormal and mutually orthogonal
    for p in gen.PARTS:
        assert sub[p].shape == (D, DEFAULT_PART_DIMS[p])
    # nothing is axis-aligned
    assert q.abs().max() < 0.9
    x = gen.sample_latents(0, range(3))
    f = gen.factors(x)
    for p in gen.PARTS:
        assert torch.allclose(f[p], x @ sub[p], atol=1e-5)


def test_centre_zeroes_layout_only(gen):
    x = gen.sample_latents(0, range(5))
    xc = gen.centre(x)
    f, fc = gen.factors(x), gen.factors(xc)
    assert fc["layout"].abs().max() < 1e-5
    for p in gen.PARTS:
        if p != "layout":
            assert torch.allclose(f[p], fc[p], atol=1e-5)
    assert torch.allclose(gen.centre(xc), xc, atol=1e-6)


def test_unused_dims_have_zero_jacobian(gen64, centred):
    x, js = centred
    unused = gen64.basis[:, gen64.used_dims :]
    for j in js:
        ratio = float((j @ unused).norm() / j.norm())
        assert ratio < 1e-12
    # finite moves along them change nothing
    y = gen64(x)
    assert torch.allclose(gen64(x + 3.0 * unused[:, :5].sum(1)), y, atol=1e-12)
    # while every used part does act
    for p, q in gen64.ground_truth_subspaces().items():
        assert (js[0] @ q.double()).norm() > 1e-3, p


def test_canonical_boxes(gen):
    boxes = gen.canonical_boxes()
    assert set(boxes) == {"eyes", "mouth"}
    for y0, x0, y1, x1 in boxes.values():
        assert 0.0 <= y0 < y1 <= 1.0 and 0.0 <= x0 < x1 <= 1.0
    print("\ncanonical boxes:", {k: tuple(round(c, 4) for c in v) for k, v in boxes.items()})
    assert np.allclose(boxes["eyes"], (0.36275, 0.29675, 0.54725, 0.70325), atol=1e-6)
    assert np.allclose(boxes["mouth"], (0.55375, 0.35875, 0.72625, 0.64125), atol=1e-6)
    assert boxes["eyes"][2] < boxes["mouth"][0]  # disjoint


@pytest.mark.parametrize("part", ["eyes", "mouth"])
def test_part_never_outgrows_its_box(gen64, gt, part):
    """Bounded sizes: at saturated factor values the part still changes only its box."""
    rest = 1.0 - box_mask(gen64.canonical_boxes()[part])
    x = gen64.centre(gen64.sample_latents(0, range(1)).double())
    q = gt[part]
    f0 = gen64.factors(x)[part]
    worst = 0.0
    for signs in itertools.product([-1.0, 1.0], repeat=q.shape[1]):
        xe = x + (50.0 * torch.tensor(signs, dtype=torch.float64) - f0) @ q.T
        d = (gen64(xe) - gen64(x)).mean(1).reshape(-1)
        worst = max(worst, float((d**2 * rest).sum() / (d**2).sum()))
    print(f"\n{part}: largest share of a saturated edit's energy outside the box {worst:.1e}")
    # compact edges: nothing changes outside up to float64 rounding (measured ~1e-12)
    assert worst <= 1e-10


# ----------------------------------------------------------------------------- part masks
def test_part_masks_shapes_and_pooling(gen):
    x = gen.sample_latents(0, range(3))
    full = gen.part_masks(x)
    assert set(full) == set(LOCAL)
    for m in full.values():
        assert m.shape == (3, R, R) and m.dtype == torch.float32
        assert m.min() >= 0.0 and m.max() <= 1.0
    pooled = gen.part_masks(x, grid=(16, 16))
    for p in LOCAL:
        want = F.avg_pool2d(full[p][:, None], 4)[:, 0]
        assert pooled[p].shape == (3, 16, 16)
        assert torch.allclose(pooled[p], want, atol=1e-6)
    assert gen.part_masks(x, grid=32)["eyes"].shape == (3, 32, 32)
    # the eye mask is local: well under a tenth of the image
    assert float(full["eyes"].mean()) < 0.1


def test_part_masks_cover_where_factors_act(gen64, gt, free):
    x, js = free
    masks = gen64.part_masks(x)
    worst = {}
    for i, j in enumerate(js):
        for p in LOCAL:
            e = ((j @ gt[p]) ** 2).sum(1)
            out = float((e * (1.0 - masks[p][i].double().reshape(-1))).sum() / e.sum())
            worst[p] = max(worst.get(p, 0.0), out)
    print("\nshare of each part's Jacobian energy outside its mask (worst of 4 moved faces):",
          {p: f"{v:.1e}" for p, v in worst.items()})
    for p, v in worst.items():
        assert v < 1e-6, (p, v)  # exactly zero but for the float32 masks' rounding


def test_masks_and_eyes_move_with_layout(gen64):
    x = gen64.sample_latents(1, range(4)).double()
    xc = gen64.centre(x)
    cy = (torch.arange(R, dtype=torch.float64) + 0.5)
    m, mc = gen64.part_masks(x)["eyes"].double(), gen64.part_masks(xc)["eyes"].double()

    def centroid(mask):
        w = mask.sum((1, 2))
        return (mask.sum(2) @ cy) / w, (mask.sum(1) @ cy) / w

    (my, mx), (cyc, cxc) = centroid(m), centroid(mc)
    centre = gen64.face_centre(x)
    assert torch.allclose(gen64.face_centre(xc), torch.full_like(centre, 0.5))
    want_y, want_x = (centre[:, 0] - 0.5) * R, (centre[:, 1] - 0.5) * R
    assert torch.allclose(cyc, torch.full_like(cyc, (0.5 - 0.045) * R), atol=0.05)
    assert torch.allclose(my - cyc, want_y, atol=0.6) and torch.allclose(mx - cxc, want_x, atol=0.6)
    assert (want_y.abs() + want_x.abs()).max() > 4.0  # these faces really moved
    # and the rendered eyes moved with them: the dark lash lines follow the mask
    img = gen64(x).mean(1)
    for i in range(4):
        inside = float(((img[i] + 1) * m[i]).sum() / m[i].sum())
        shifted = float(((img[i] + 1) * mc[i]).sum() / mc[i].sum())
        if (want_y[i].abs() + want_x[i].abs()) > 3.0:
            assert inside != pytest.approx(shifted, rel=1e-3)


# ----------------------------------------------------------------------------- the method
@pytest.mark.parametrize("part", ["eyes", "mouth"])
def test_projected_directions_lie_in_part_subspace(gen64, gt, centred, part):
    """Properties 1-3 of the brief, with the stand-in factorisation, on centred faces."""
    _, js = centred
    region = box_mask(gen64.canonical_boxes()[part])
    q = gt[part]
    for i, j in enumerate(js):
        r = standin_lowrankgan(j, region)
        strong = r["projected"][r["strong"]]
        sines = [sine_to(d, q) for d in strong]
        span = int((torch.linalg.svdvals(q.T @ strong.T) > 0.5).sum())
        unproj = [sine_to(p, q) for p in r["principal"]]
        e = (j @ q) ** 2
        leak = float((e.sum(1) * (1.0 - region)).sum() / e.sum())
        in_null = float(torch.linalg.eigvalsh(q.T @ r["m_b"] @ q).max() / r["b_top"])
        leaks_in = {
            p: float(torch.linalg.eigvalsh(gt[p].T @ r["m_r"] @ gt[p]).max() / r["top"])
            for p in ("layout", "lighting", "face")
        }
        print(
            f"\n{part} sample {i}: {len(sines)} strong projected directions, "
            f"max sin to {part} subspace {max(sines):.1e}, span {span}/{q.shape[1]}; "
            f"unprojected principal sines {np.round(unproj, 3).tolist()}; "
            f"energy outside box {leak:.1e}; {part} eigenvalue in M_B {in_null:.1e} of max; "
            f"leaking parts (energy in M_R / max) { {k: round(v, 3) for k, v in leaks_in.items()} }"
        )
        # 1. every strong projected direction lies in the part's subspace, and they span half of it
        assert len(sines) > 0 and max(sines) < 0.05
        assert span >= (q.shape[1] + 1) // 2
        # 2. the unprojected principal directions do not: layout, lighting, skin leak into the box
        e_p = torch.einsum("kd,de,ke->k", r["principal"], r["m_r"], r["principal"])
        assert max(s for s, e in zip(unproj, e_p) if e >= 0.01 * r["top"]) > 0.5
        assert leaks_in["layout"] > 0.01 and leaks_in["lighting"] > 0.01
        # 3. the part acts only inside its box, so its directions lie in the null space of M_B
        assert leak < 1e-12  # exactly zero up to rounding (compact edges)
        assert in_null < 1e-12


def test_eye_directions_transfer_to_moved_faces(gen64, gt, centred, free):
    """Property 4: eye directions found on one centred face edit the eyes of moved faces."""
    (_xa, ja), (xb, jb) = centred, free
    region = box_mask(gen64.canonical_boxes()["eyes"])
    r = standin_lowrankgan(ja[0], region)
    dirs = r["projected"][r["strong"]]
    e_a = ((ja[0] @ dirs.T) ** 2).sum(0)
    masks = gen64.part_masks(xb)["eyes"].double()
    for i, j in enumerate(jb):
        m = masks[i].reshape(-1)
        e_b = (j @ dirs.T) ** 2
        inside = (e_b * m[:, None]).sum(0) / e_b.sum(0)
        ratio = e_b.sum(0) / e_a
        edit = (gen64(xb[i : i + 1] + 2.0 * dirs[:1]) - gen64(xb[i : i + 1])).mean(1).reshape(-1)
        realized = float((edit**2 * m).sum() / (edit**2).sum())
        print(
            f"\ntransfer to moved face {i}: share inside its eye mask min {float(inside.min()):.6f}, "
            f"energy ratio target/source {np.round(ratio.numpy(), 2).tolist()}, "
            f"realized edit inside {realized:.6f}"
        )
        assert inside.min() > 0.999
        assert ratio.min() > 0.1 and ratio.max() < 10.0
        assert realized > 0.999
