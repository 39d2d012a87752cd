"""Forward-mode Jacobian engine against independent computations.

References: ``torch.autograd.functional.jacobian`` (reverse mode), central finite
differences in float64, a closed-form Jacobian, numpy reshape-means for pooling and
numpy einsums with an explicit ``diag(R)`` for the Grams.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lrgan_dist.core.jacobian import (
    JacobianConfig,
    JacobianEngine,
    default_grid,
    describe_failures,
    jacobian,
    pool_image,
    region_grams,
    to_uint8_preview,
)

# torch's forward-AD decompositions use torch.jit.script on first use (torch internals).
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

D = 6


# ----------------------------------------------------------------------------- test generators


class MLPGen(torch.nn.Module):
    """x [n, d] -> tanh-MLP image [n, 3, 16, 16]; anchor enters multiplicatively."""

    image_range = (-1.0, 1.0)

    def __init__(self, d: int = D, dtype: torch.dtype = torch.float32, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.latent_dim = d
        self.image_shape = (3, 16, 16)
        self.w1 = torch.nn.Parameter(torch.randn(d, 32, generator=g, dtype=dtype) / math.sqrt(d))
        self.w2 = torch.nn.Parameter(torch.randn(32, 3 * 16 * 16, generator=g, dtype=dtype) / math.sqrt(32))
        self.wa = torch.randn(d, 32, generator=g, dtype=dtype) / math.sqrt(d)

    def forward(self, x: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor:
        a = x if anchor is None else anchor
        h = torch.tanh(x @ self.w1) * (1.0 + 0.5 * torch.tanh(a @ self.wa))
        return torch.tanh(h @ self.w2).reshape(-1, *self.image_shape)


class ConvGen(torch.nn.Module):
    """x [n, d] -> conv decoder with upsampling, image [n, 3, 16, 16]."""

    image_range = (-1.0, 1.0)

    def __init__(self, d: int = D, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.latent_dim = d
        self.image_shape = (3, 16, 16)
        self.fc = torch.nn.Linear(d, 8 * 4 * 4, dtype=dtype)
        self.c1 = torch.nn.Conv2d(8, 8, 3, padding=1, dtype=dtype)
        self.c2 = torch.nn.Conv2d(8, 3, 3, padding=1, dtype=dtype)

    def forward(self, x: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.tanh(self.fc(x)).reshape(-1, 8, 4, 4)
        h = torch.nn.functional.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
        h = torch.tanh(self.c1(h))
        h = torch.nn.functional.interpolate(h, scale_factor=2, mode="nearest")
        return torch.tanh(self.c2(h))


class Analytic:
    """y_p = tanh(u_p·x) · (v_p·x) with closed-form J_p = (1 - t²)(v_p·x) u_p + t v_p."""

    def __init__(self, d: int = 4, out: tuple[int, ...] = (2, 5, 3)) -> None:
        g = torch.Generator().manual_seed(3)
        self.out = out
        self.U = torch.randn(int(np.prod(out)), d, generator=g, dtype=torch.float64)
        self.V = torch.randn(int(np.prod(out)), d, generator=g, dtype=torch.float64)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(x @ self.U.T) * (x @ self.V.T)).reshape(-1, *self.out)

    def jac(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.tanh(x @ self.U.T)  # [n, P]
        s = x @ self.V.T
        J = ((1 - t**2) * s)[..., None] * self.U + t[..., None] * self.V  # [n, P, d]
        return J.reshape(x.shape[0], *self.out, x.shape[1])


class _SqNoVmap(torch.autograd.Function):
    """Custom op with a jvp rule but no vmap rule: vmap over jvp must fail."""

    @staticmethod
    def forward(z):
        return z * z

    @staticmethod
    def setup_context(ctx, inputs, output):
        (z,) = inputs
        ctx.save_for_forward(z)
        ctx.save_for_backward(z)

    @staticmethod
    def jvp(ctx, t):
        (z,) = ctx.saved_tensors
        return 2 * z * t

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return 2 * z * g


class NoVmapGen(MLPGen):
    def forward(self, x, anchor=None):
        return _SqNoVmap.apply(super().forward(x, anchor))


class SqrtGen(MLPGen):
    """NaN image (and J) for samples with x[:, 0] < 0."""

    def forward(self, x, anchor=None):
        return super().forward(x, anchor) * torch.sqrt(x[:, :1, None, None])


def reverse_jacobian(fn, x: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample reverse-mode Jacobian [n, *out, d] via torch.autograd.

    ``fn(z)`` or, with ``anchor``, ``fn(z, a)`` for the sample's anchor row a.
    """
    rows = []
    for i in range(x.shape[0]):
        if anchor is None:
            f = lambda xi: fn(xi[None])[0]  # noqa: E731
        else:
            f = lambda xi, a=anchor[i : i + 1]: fn(xi[None], a)[0]  # noqa: E731
        rows.append(torch.autograd.functional.jacobian(f, x[i], vectorize=True))
    return torch.stack(rows)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def latents(n: int, d: int = D, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def box(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> torch.Tensor:
    m = torch.zeros(h, w)
    m[y0:y1, x0:x1] = 1
    return m


# ----------------------------------------------------------------------------- jacobian


@pytest.mark.parametrize("gen_cls", [MLPGen, ConvGen])
@pytest.mark.parametrize("grid,channels", [((16, 16), "rgb"), ((8, 8), "mean"), ((5, 7), "sum")])
def test_engine_matches_reverse_mode(gen_cls, grid, channels):
    G = gen_cls()
    x = latents(2)
    eng = JacobianEngine(G, JacobianConfig(grid=grid, channels=channels, chunk=4, keep_jacobian=True))
    masks = box(*grid, 1, 1, 3, 4)[None]
    out = eng.compute(x, masks)
    ref = reverse_jacobian(lambda z, a: pool_image(G.forward(z, a), grid, channels), x, x)
    assert out["jacobian"].shape == ref.shape
    assert rel(out["jacobian"], ref) < 1e-5
    assert torch.allclose(out["images"], G.forward(x, x).detach(), atol=1e-6)


def test_jacobian_matches_central_differences_float64():
    G = ConvGen(dtype=torch.float64)
    x = latents(2, dtype=torch.float64)
    f = lambda z: pool_image(G(z), (8, 8), "rgb")  # noqa: E731
    y, J = jacobian(f, x, chunk=4)
    eps = 1e-6
    fd = torch.stack(
        [(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in torch.eye(D, dtype=torch.float64)],
        dim=-1,
    ).detach()
    assert J.dtype == torch.float64
    assert rel(J, fd) < 1e-3
    assert torch.allclose(y, f(x).detach())


def test_jacobian_matches_closed_form():
    fn = Analytic()
    x = latents(5, d=4, dtype=torch.float64)
    y, J = jacobian(fn, x, chunk=3)
    assert J.shape == (5, 2, 5, 3, 4)
    torch.testing.assert_close(J, fn.jac(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, fn(x))


@pytest.mark.parametrize("chunk", [1, 4, 5, 64])
def test_chunk_size_does_not_change_result(chunk):
    G = MLPGen(dtype=torch.float64)
    x = latents(2, dtype=torch.float64)
    _, ref = jacobian(lambda z: G(z, x), x, chunk=D)
    y, J = jacobian(lambda z: G(z, x), x, chunk=chunk)
    torch.testing.assert_close(J, ref, rtol=1e-13, atol=1e-13)


def test_vectorize_true_and_false_agree():
    G = ConvGen()
    x = latents(3)
    y1, J1 = jacobian(G, x, chunk=4, vectorize=True)
    y2, J2 = jacobian(G, x, chunk=4, vectorize=False)
    torch.testing.assert_close(J1, J2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(y1, y2)


def test_vmap_failure_falls_back_to_loop():
    G = NoVmapGen()
    x = latents(2)
    with pytest.warns(RuntimeWarning, match="falling back"):
        _, J = jacobian(lambda z: G(z, x), x, chunk=3, vectorize=True)
    _, J_loop = jacobian(lambda z: G(z, x), x, chunk=3, vectorize=False)
    ref = reverse_jacobian(G, x, x)
    assert rel(J, ref) < 1e-5 and rel(J_loop, ref) < 1e-5


def test_anchor_is_held_fixed():
    G = MLPGen(dtype=torch.float64)
    x = latents(2, dtype=torch.float64)
    anchor = latents(2, dtype=torch.float64, seed=7)
    _, J = jacobian(lambda z: G(z, anchor), x)
    ref = reverse_jacobian(G, x, anchor)
    full = reverse_jacobian(lambda z: G(z, z), x)  # differentiating through the anchor differs
    assert rel(J, ref) < 1e-12
    assert rel(J, full) > 1e-3
    # the engine passes anchor=x by default, held fixed
    G32 = MLPGen()
    x32 = x.float()
    out = JacobianEngine(G32, JacobianConfig(grid=(16, 16), channels="rgb", keep_jacobian=True)).compute(
        x32, box(16, 16, 2, 2, 6, 6)[None]
    )
    assert rel(out["jacobian"], reverse_jacobian(G32, x32, x32)) < 1e-5


def test_jacobian_rejects_bad_input():
    with pytest.raises(ValueError, match=r"expected x \[n, d\], received \[5\]"):
        jacobian(lambda z: z, torch.zeros(5))
    with pytest.raises(ValueError, match="chunk"):
        jacobian(lambda z: z, torch.zeros(2, 3), chunk=0)
    with pytest.raises(ValueError, match="n = 2"):
        jacobian(lambda z: z.sum(0), torch.zeros(2, 3))


# ----------------------------------------------------------------------------- grams


def dense_grams(J: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference: flatten J to (c·h·w)×d and use an explicit diag(R) per sample."""
    n, c, h, w, d = J.shape
    R = masks.shape[0]
    if masks.ndim == 3:
        masks = np.broadcast_to(masks[:, None], (R, n, h, w))
    gin = np.zeros((n, R, d, d))
    gout = np.zeros((n, R, d, d))
    for i in range(n):
        Ji = J[i].reshape(c * h * w, d).astype(np.float64)
        for r in range(R):
            m = masks[r, i].astype(np.float64)
            DR = np.diag(np.tile(m.reshape(-1), c))  # mask broadcast over channels
            DB = np.diag(np.tile(1.0 - m.reshape(-1), c))
            gin[i, r] = np.einsum("pa,pq,qb->ab", Ji, DR, Ji) / m.sum()
            gout[i, r] = np.einsum("pa,pq,qb->ab", Ji, DB, Ji) / (1.0 - m).sum()
    return gin, gout


def soft_masks(R: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(R, *shape, generator=g)
    m[m < 0.4] = 0.0  # some exact zeros and ones, the rest soft
    m[m > 0.9] = 1.0
    return m


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("c", [1, 3])
def test_region_grams_match_dense_reference(per_sample, c):
    n, h, w, d, R = 3, 5, 4, 7, 2
    J = torch.randn(n, c, h, w, d, generator=torch.Generator().manual_seed(2))
    masks = soft_masks(R, (n, h, w) if per_sample else (h, w))
    gin, gout = region_grams(J, masks)
    rin, rout = dense_grams(J.numpy(), masks.numpy())
    assert gin.shape == gout.shape == (n, R, d, d) and gin.dtype == torch.float32
    np.testing.assert_allclose(gin.numpy(), rin, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gout.numpy(), rout, rtol=1e-5, atol=1e-5)
    assert torch.equal(gin, gin.transpose(-1, -2)) and torch.equal(gout, gout.transpose(-1, -2))


def test_region_grams_float64_and_pixel_blocks(monkeypatch):
    import lrgan_dist.core.jacobian as jac

    n, c, h, w, d = 2, 3, 6, 6, 5
    J = torch.randn(n, c, h, w, d, generator=torch.Generator().manual_seed(4))
    masks = soft_masks(3, (h, w), seed=5)
    g64 = region_grams(J, masks, dtype="float64")
    assert g64[0].dtype == torch.float64
    ref = dense_grams(J.numpy(), masks.numpy())
    np.testing.assert_allclose(g64[0].numpy(), ref[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g64[1].numpy(), ref[1], rtol=1e-12, atol=1e-12)
    # tiny pixel blocks (many passes of the blocked loop) give the same Grams
    monkeypatch.setattr(jac, "_GRAM_BLOCK_ELEMS", 1)
    g_blocked = region_grams(J, masks, dtype=torch.float64)
    torch.testing.assert_close(g_blocked[0], g64[0], rtol=1e-13, atol=1e-13)
    # PSD
    assert torch.linalg.eigvalsh(g64[0]).min() > -1e-12


def test_region_grams_empty_region_is_nan_and_bad_masks_raise():
    J = torch.randn(2, 1, 3, 3, 4)
    m = torch.zeros(1, 2, 3, 3)
    m[0, 0, 1, 1] = 1.0  # sample 1 has an empty region
    gin, gout = region_grams(J, m)
    assert torch.isfinite(gin[0]).all() and torch.isnan(gin[1]).all()
    assert torch.isfinite(gout).all()
    with pytest.raises(ValueError, match=r"expected masks \[R, 3, 3\].*received \[1, 4, 4\]"):
        region_grams(J, torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        region_grams(J, torch.full((1, 3, 3), 2.0))
    with pytest.raises(ValueError, match="float32"):
        region_grams(J, m, dtype="float16")


def test_engine_grams_equal_dense_computation_on_pooled_jacobian():
    G = MLPGen()
    x = latents(2)
    masks = torch.stack([box(8, 8, 2, 1, 4, 7), box(8, 8, 5, 3, 8, 6)])  # [R, h, w]
    cfg = JacobianConfig(grid=(8, 8), channels="mean", chunk=4, keep_jacobian=True)
    out = JacobianEngine(G, cfg).compute(x, masks)
    rin, rout = dense_grams(out["jacobian"].numpy(), masks.numpy())
    np.testing.assert_allclose(out["gram_in"].numpy(), rin, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out["gram_out"].numpy(), rout, rtol=1e-4, atol=1e-7)
    assert out["finite"].tolist() == [True, True]


def test_engine_shared_vs_per_sample_masks_and_float64():
    G = MLPGen()
    x = latents(3)
    shared = soft_masks(2, (8, 8), seed=9)
    per_sample = shared[:, None].expand(2, 3, 8, 8).clone()
    e32 = JacobianEngine(G, JacobianConfig(grid=(8, 8)))
    a, b = e32.compute(x, shared), e32.compute(x, per_sample)
    torch.testing.assert_close(a["gram_in"], b["gram_in"])
    torch.testing.assert_close(a["gram_out"], b["gram_out"])
    assert "jacobian" not in a
    e64 = JacobianEngine(G, JacobianConfig(grid=(8, 8), gram_dtype="float64"))
    c = e64.compute(x, shared)
    assert c["gram_in"].dtype == torch.float64 and c["images"].dtype == torch.float32
    torch.testing.assert_close(c["gram_in"].float(), a["gram_in"], rtol=1e-4, atol=1e-7)
    # a genuinely per-sample mask changes only that sample
    per_sample[0, 1] = box(8, 8, 0, 0, 3, 3)
    d = e32.compute(x, per_sample)
    torch.testing.assert_close(d["gram_in"][[0, 2]], a["gram_in"][[0, 2]])
    assert not torch.allclose(d["gram_in"][1, 0], a["gram_in"][1, 0])


def test_engine_flags_nan_samples():
    G = SqrtGen()
    x = latents(3)
    x[1, 0] = -1.0
    x[[0, 2], 0] = x[[0, 2], 0].abs() + 0.5
    out = JacobianEngine(G, JacobianConfig(grid=(8, 8))).compute(x, box(8, 8, 1, 1, 4, 4)[None])
    assert out["finite"].tolist() == [True, False, True]
    reasons = describe_failures(out, ["eyes"])
    assert set(reasons) == {1} and "generator output" in reasons[1] and "eyes" in reasons[1]
    assert torch.isfinite(out["gram_in"][[0, 2]]).all()


def test_engine_flags_empty_per_sample_region():
    G = MLPGen()
    masks = box(8, 8, 1, 1, 4, 4)[None, None].repeat(1, 2, 1, 1)
    masks[0, 1] = 0.0
    out = JacobianEngine(G, JacobianConfig(grid=(8, 8))).compute(latents(2), masks)
    assert out["finite"].tolist() == [True, False]
    assert "empty region" in describe_failures(out)[1]


def test_engine_rejects_bad_inputs():
    eng = JacobianEngine(MLPGen(), JacobianConfig(grid=(8, 8)))
    with pytest.raises(ValueError, match=rf"expected latents \[n, {D}\], received \[2, 5\]"):
        eng.compute(torch.zeros(2, 5), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match=r"expected \[R, 8, 8\] or \[R, 2, 8, 8\].*received \[1, 16, 16\]"):
        eng.compute(latents(2), torch.zeros(1, 16, 16))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        eng.compute(latents(2), -torch.ones(1, 8, 8))
    with pytest.raises(ValueError, match="anchor"):
        eng.compute(latents(2), box(8, 8, 1, 1, 3, 3)[None], anchor=torch.zeros(3, D))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"grid": (0, 8)}, "grid"),
        ({"grid": (8, 8), "channels": "bgr"}, "channels.*'mean'.*received 'bgr'"),
        ({"grid": (8, 8), "chunk": 0}, "chunk"),
        ({"grid": (8, 8), "gram_dtype": "float16"}, "gram_dtype"),
        ({"grid": (8, 8), "keep_jacobian": 1}, "keep_jacobian"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        JacobianConfig(**kwargs)


def test_default_grid():
    assert default_grid((3, 1024, 1024)) == (256, 256)
    assert default_grid((3, 64, 64)) == (64, 64)


# ----------------------------------------------------------------------------- pooling


def np_area_pool(y: np.ndarray, h: int, w: int) -> np.ndarray:
    """Exact area pooling by pixel replication to a common multiple, then block means."""
    n, C, H, W = y.shape
    ly, lx = math.lcm(H, h) // H, math.lcm(W, w) // W
    up = np.repeat(np.repeat(y, ly, axis=2), lx, axis=3)
    return up.reshape(n, C, h, up.shape[2] // h, w, up.shape[3] // w).mean(axis=(3, 5))


@pytest.mark.parametrize("grid", [(8, 8), (4, 2), (16, 16), (6, 5), (3, 7)])
def test_pool_image_matches_numpy(grid):
    y = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = np_area_pool(y.numpy(), *grid)
    np.testing.assert_allclose(pool_image(y, grid, "rgb").numpy(), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        pool_image(y, grid, "mean").numpy(), ref.mean(axis=1, keepdims=True), atol=1e-12
    )
    np.testing.assert_allclose(
        pool_image(y, grid, "sum").numpy(), ref.sum(axis=1, keepdims=True), atol=1e-12
    )


def test_pool_image_divisible_is_reshape_mean():
    y = torch.randn(1, 3, 12, 8)
    ref = y.numpy().reshape(1, 3, 4, 3, 2, 4).mean(axis=(3, 5))
    np.testing.assert_allclose(pool_image(y, (4, 2), "rgb").numpy(), ref, rtol=1e-6, atol=1e-7)
    assert pool_image(y, (4, 2)).shape == (1, 1, 4, 2)


def test_pool_image_errors():
    with pytest.raises(ValueError, match=r"expected images \[n, C, H, W\], received \[3, 16, 16\]"):
        pool_image(torch.zeros(3, 16, 16), (8, 8))
    with pytest.raises(ValueError, match="channels.*received 'grey'"):
        pool_image(torch.zeros(1, 3, 16, 16), (8, 8), "grey")
    with pytest.raises(ValueError, match="grid"):
        pool_image(torch.zeros(1, 3, 16, 16), (8, -1))


# ----------------------------------------------------------------------------- previews


def test_to_uint8_preview():
    img = torch.linspace(-1, 1, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8)
    p = to_uint8_preview(img)
    assert p.shape == (2, 8, 8, 3) and p.dtype == np.uint8
    np.testing.assert_array_equal(
        p, np.rint((img.permute(0, 2, 3, 1).numpy() + 1) * 127.5).astype(np.uint8)
    )
    grey = torch.rand(1, 1, 512, 300, generator=torch.Generator().manual_seed(0))
    q = to_uint8_preview(grey, image_range=(0, 1), max_size=256)
    assert q.shape == (1, 256, 150, 3)
    assert (q[..., 0] == q[..., 2]).all()
    ref = np_area_pool(grey.double().numpy(), 256, 150)[0, 0] * 255
    np.testing.assert_allclose(q[0, :, :, 1], np.rint(ref), atol=1)
    nan = torch.full((1, 3, 4, 4), float("nan"))
    assert (to_uint8_preview(nan) == 0).all()
    with pytest.raises(ValueError, match="received"):
        to_uint8_preview(torch.zeros(1, 2, 4, 4))
