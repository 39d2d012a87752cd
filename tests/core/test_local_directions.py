"""Issue 18, items 1 and 3: LowRankGAN stores no inert direction and its rows are best first.

1. A generator built here with a rank-deficient Jacobian (a two-layer ReLU MLP with dead
   hidden units): latent directions outside the alive units' weight rows change nothing,
   and every alive unit but one paints the whole image. Only the unit painting the box
   alone gives a local direction; on a sample where every alive unit paints the whole image
   there is none ("no local direction", rank 0). Under the old keep rule (ν·σ_k/σ_1 ≥
   100·eps, relative to the sample's own largest row) the round-off projections of P onto
   null(L_B) were kept as unit rows that change the image by ~1e-7 of a random direction.
3. On the synthetic generator, rows are ordered by ``vᵀM_R v`` after projection and the
   method's spectrum holds those energies (Zhu et al. 2021 Eq. 2 with the region's Gram).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrgan_dist.core.jacobian import JacobianConfig, JacobianEngine, region_grams
from lrgan_dist.core.methods import get_method
from lrgan_dist.core.subspaces import INERT_FRAC, carrying, random_energy, region_energy
from lrgan_dist.generators import build_generator
from lrgan_dist.regions import box_mask

H = W = 8
D_LAT, HID = 16, 8


def _mlp_jacobian(local_unit: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """J [1, 1, H, W, d] of y = A · relu(W1 x + b) at x, by forward-mode AD, and the box mask.

    Hidden units 5..7 are dead (bias −100); units 0..4 alive. Every alive unit paints the
    whole grid (dense random A) except, with ``local_unit``, unit 0, which paints the box only.
    """
    g = torch.Generator().manual_seed(seed)
    W1 = torch.randn(HID, D_LAT, generator=g, dtype=torch.float64)
    b = torch.full((HID,), 10.0, dtype=torch.float64)
    b[5:] = -100.0
    A = torch.randn(H * W, HID, generator=g, dtype=torch.float64)
    box = torch.zeros(H, W, dtype=torch.float64)
    box[1:4, 2:6] = 1.0
    if local_unit:
        A[:, 0] = A[:, 0] * box.reshape(-1)
    x = 0.1 * torch.randn(D_LAT, generator=g, dtype=torch.float64)

    def G(z: torch.Tensor) -> torch.Tensor:
        return (A @ torch.relu(W1 @ z + b)).reshape(1, H, W)

    J = torch.func.jacfwd(G)(x)  # [1, H, W, d]
    assert torch.linalg.matrix_rank(J.reshape(-1, D_LAT)).item() == 5  # rank-deficient
    return J[None], box


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rank_deficient_mlp_stores_no_inert_direction(dtype):
    Js, boxes = zip(*[_mlp_jacobian(local_unit=lu, seed=s) for s, lu in ((0, False), (1, True))])
    gi, go = [], []
    for J, box in zip(Js, boxes):
        a, c = region_grams(J, box[None], dtype=dtype)
        gi.append(a[:, 0])
        go.append(c[:, 0])
    gi, go = torch.cat(gi), torch.cat(go)  # [2, d, d] in the store's precision
    res = get_method("lowrankgan", lam=0.5, rank_tol=1e-6)(gi, go)
    V = res.vectors.double().numpy()
    Mi = gi.double().numpy()
    Mt = (gi.double() * 12 + go.double() * 52).numpy()  # whole image, ΣR = 12, ΣB = 52
    e_in = region_energy(V, Mi)
    rel = region_energy(V, Mt) / random_energy(Mt)[:, None]
    print(dtype, "rank", res.rank.tolist(), "rank_R", res.diagnostics["rank_R"].tolist(),
          "rank_B", res.diagnostics["rank_B"].tolist(), "relative change", rel)
    # sample 0: every alive unit paints the whole image — no local direction at all
    assert int(res.rank[0]) == 0 and np.isnan(V[0]).all()
    assert not carrying(V[:1], Mi[:1]).any()
    # sample 1: one local direction (the projections of all r_R principal rows onto null(L_B)
    # meet the rowspace of J in that one direction), and it changes the image
    n1 = int(res.rank[1])
    assert n1 >= 1
    np.testing.assert_allclose(np.abs(V[1, :n1] @ V[1, 0]), 1.0, atol=1e-3)
    assert (rel[1, :n1] > 1e-2).all()
    assert e_in[1, 0] >= INERT_FRAC * random_energy(Mi[1])
    # every stored row (of any sample) changes its region by ≥ 1e-5 of a random direction's
    fin = np.isfinite(e_in)
    assert (e_in[fin] >= INERT_FRAC * np.broadcast_to(random_energy(Mi)[:, None], e_in.shape)[fin]).all()
    # and the local direction leaves the rest (to first order) unchanged
    e_out = region_energy(V, go.double().numpy())
    assert (e_out[1, :n1] < 1e-6 * e_in[1, :n1]).all()


def test_energy_tol_is_a_parameter_kept_out_of_the_hash_at_default():
    a, b = get_method("lowrankgan"), get_method("lowrankgan", energy_tol=INERT_FRAC)
    assert a.param_hash() == b.param_hash() != get_method("lowrankgan", energy_tol=0.0).param_hash()
    with pytest.raises(ValueError, match="energy_tol"):
        get_method("lowrankgan", energy_tol=-1.0)


def test_rows_best_first_by_in_region_energy_on_the_synthetic_generator():
    G = build_generator("synthetic", {"latent_dim": 64, "resolution": 64, "seed": 0})
    boxes = G.canonical_boxes()
    x = G.sample_latents(0, list(range(6)))
    masks = torch.stack([torch.as_tensor(box_mask(boxes[p], (64, 64), (64, 64))) for p in ("eyes", "mouth")])
    out = JacobianEngine(G, JacobianConfig(grid=(64, 64))).compute(x, masks)
    gi, go = out["gram_in"].flatten(0, 1), out["gram_out"].flatten(0, 1)  # [12, d, d] float32
    res = get_method("lowrankgan", lam=0.25, rank_tol=1e-3)(gi, go)
    V = res.vectors.double().numpy()
    e = region_energy(V, gi.double().numpy())
    checked = 0
    for i in range(V.shape[0]):
        n = int(res.rank[i])
        if n < 2:
            continue
        checked += 1
        # stored energies = the rows' vᵀM_R v, descending; row 0 is the strongest edit
        np.testing.assert_allclose(res.spectrum[i, :n].numpy(), e[i, :n], rtol=1e-4)
        # the order: exact on the method's own energies; on energies recomputed from the float32
        # rows only up to their rounding (rows of equal energy occur: 11 rows within 1e-5 here)
        assert (np.diff(res.spectrum[i, :n].double().numpy()) <= 0).all()
        assert (np.diff(e[i, :n]) <= 1e-4 * e[i, 0]).all()
        assert torch.isnan(res.spectrum[i, n:]).all()
    assert checked >= 6


def test_projected_svd_drops_inert_rows_too():
    """The same floor in projected_svd: a region eigenvector with 1e-9 of the energy (kept by
    an energy threshold of 100 %) changes nothing and is not stored."""
    d = 4
    M_R = torch.diag(torch.tensor([1.0, 1e-9, 0.0, 0.0], dtype=torch.float64))[None]
    M_B = torch.diag(torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64))[None]
    res = get_method("projected_svd", energy_in=1.0, energy_out=0.5)(M_R, M_B)
    assert int(res.rank[0]) == 1
    np.testing.assert_allclose(np.abs(res.vectors[0, 0].double().numpy()), np.eye(d)[0], atol=1e-6)
