"""Matrix-free region subspaces (core/matfree.py, issue 17) against the dense Grams.

Acceptance: the certified Ritz bases agree with the dense Grams' top-k eigenspaces
(largest principal-angle sine ≤ 1e-4, k at a spectral gap) on the synthetic generator and
a random small StyleGAN2; LowRankGAN on the compressed problem recovers the synthetic
eye subspace (sine < 0.05) like the dense path.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrgan_dist.core.jacobian import jacobian, pool_image, region_grams
from lrgan_dist.core.matfree import (
    MatFreeConfig,
    RegionOperator,
    block_krylov,
    compressed_directions,
    dense_topk,
    region_subspaces,
)
from lrgan_dist.core.methods import get_method
from lrgan_dist.core.subspaces import carrying, subspace_coverage, subspace_sines
from lrgan_dist.generators import build_generator
from lrgan_dist.regions import box_mask

GRID = (32, 32)


def _max_sine(A: torch.Tensor, B: torch.Tensor) -> float:
    """Largest principal-angle sine between the row spaces of A [k, d] and B [k, d]."""
    Qb = np.linalg.qr(B.double().numpy().T)[0]
    return float(subspace_sines(A.double().numpy(), Qb).max())


def _gap_index(w: torch.Tensor, kmax: int, lo: int = 2) -> int:
    """k in [lo, kmax] with the largest absolute gap (θ_k − θ_{k+1}) / θ_1 among the pairs with
    θ_k ≥ 1e-3·θ_1 (well separated against float32 products' rounding, ~1e-7·θ_1)."""
    w = w.double()
    gaps = (w[lo - 1:kmax] - w[lo:kmax + 1]) / w[0]
    gaps = torch.where(w[lo - 1:kmax] >= 1e-3 * w[0], gaps, -1.0)
    return lo + int(torch.argmax(gaps))


@pytest.fixture(scope="module")
def synthetic():
    torch.manual_seed(0)
    G = build_generator("synthetic", {"latent_dim": 64, "resolution": 32, "seed": 0})
    x = G.centre(G.sample_latents(0, [0, 1]))
    boxes = G.canonical_boxes()
    masks = torch.stack([torch.as_tensor(box_mask(boxes["eyes"], GRID, GRID))])
    _, J = jacobian(lambda z: pool_image(G.forward(z), GRID, "mean"), x, chunk=16)
    gi, go = region_grams(J, masks, dtype=torch.float64)
    res = region_subspaces(G, x, masks, GRID, cfg=MatFreeConfig(k=24, oversample=8, tol=1e-6, max_blocks=10))
    return G, x, masks, J, gi[:, 0], go[:, 0], res


def test_operator_is_the_dense_jacobian(synthetic):
    G, x, masks, J, *_ = synthetic
    op = RegionOperator(G.forward, x, GRID, "mean", chunk=5)
    V = torch.randn(2, 7, 64)
    JV = op.jvp(V)  # [n, b, c, h, w]
    dense = torch.einsum("nchwd,nbd->nbchw", J, V)
    assert torch.allclose(JV, dense, atol=1e-5 * dense.abs().max())
    U = torch.randn(2, 3, 1, *GRID)
    JtU = op.vjp(U)
    dense_t = torch.einsum("nchwd,nbchw->nbd", J, U)
    assert torch.allclose(JtU, dense_t, atol=1e-5 * dense_t.abs().max())
    assert op.counts["jvp"] == 7 and op.counts["vjp"] == 3


def test_block_krylov_on_explicit_matrices():
    g = torch.Generator().manual_seed(0)
    d, k = 60, 6
    E = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    w = torch.cat([torch.linspace(10, 5, k), 0.5 ** torch.arange(d - k, dtype=torch.float64)]).to(torch.float64)
    M = (E * w) @ E.T
    out = block_krylov(lambda X, a: M @ X, torch.randn(1, d, k + 4, generator=g, dtype=torch.float64), k,
                       tol=1e-10, max_blocks=20)
    assert bool(out["certified"].all())
    assert _max_sine(out["V"][0], E[:, :k].T) < 1e-9
    assert torch.allclose(out["theta"][0], w[:k], rtol=1e-9)
    assert torch.allclose(out["MV"][0], out["V"][0] @ M, atol=1e-9)


def test_bases_agree_with_dense_synthetic(synthetic):
    *_, gi, go, res = synthetic
    assert bool(res.certified.all()) and bool(res.finite.all())
    for M, V, th in ((gi, res.basis_in[:, 0], res.eig_in[:, 0]), (go, res.basis_out[:, 0], res.eig_out[:, 0])):
        for i in range(M.shape[0]):
            w = torch.linalg.eigvalsh(M[i]).flip(-1)
            k = _gap_index(w, 23)
            Vd, thd = dense_topk(M[i][None], k)
            s = _max_sine(V[i, :k], Vd[0])
            print(f"k={k} gap {float(w[k - 1] / w[k]):.2e} sine {s:.2e}")
            assert s <= 1e-4
            assert torch.allclose(th[i, :k].double(), thd[0], rtol=1e-4, atol=1e-6 * float(w[0]))


def test_bases_agree_with_dense_stylegan2():
    G = build_generator("stylegan2", {"random_init": {"z_dim": 64, "w_dim": 64, "img_resolution": 16,
                                                      "channel_base": 256, "channel_max": 32, "mapping_layers": 2,
                                                      "perturb": 0.1, "seed": 0}, "space": "w"})
    x = G.sample_latents(0, [0])
    grid = (16, 16)
    mask = torch.zeros(1, *grid)
    mask[0, 4:10, 5:12] = 1
    _, J = jacobian(lambda z: pool_image(G.forward(z), grid, "mean"), x, chunk=16)
    gi, go = region_grams(J, mask, dtype=torch.float64)
    res = region_subspaces(G, x, mask, grid, cfg=MatFreeConfig(k=12, oversample=12, tol=1e-7, max_blocks=12,
                                                               union=False))
    for M, V, rs in ((gi[0, 0], res.basis_in[0, 0], res.residual_in[0, 0]),
                     (go[0, 0], res.basis_out[0, 0], res.residual_out[0, 0])):
        w = torch.linalg.eigvalsh(M).flip(-1)
        k = _gap_index(w, 10)
        s = _max_sine(V[:k], dense_topk(M[None], k)[0][0])
        print(f"stylegan2 k={k} gap {float(w[k - 1] / w[k]):.2f} residual {float(rs[:k].max()):.1e} sine {s:.2e}")
        assert s <= 1e-4


def test_compressed_methods_match_dense_on_exact_pairs(synthetic):
    """Given exact top-k pairs with k ≥ both ranks, the compressed jacobian_svd / projected_svd are
    the dense methods'."""
    *_, gi, go, _ = synthetic
    k = 24
    Vi, ti = dense_topk(gi, k)
    Vo, to = dense_topk(go, k)
    W = torch.cat([Vi, Vo], 1)
    ui, uo = W @ gi @ W.mT, W @ go @ W.mT
    for name, params in (("jacobian_svd", {}), ("projected_svd", {"energy_in": 0.99, "energy_out": 0.99})):
        dense = get_method(name, **params)(gi, go)
        comp = compressed_directions(name, params, Vi, ti, Vo, to, ui, uo)
        for i in range(gi.shape[0]):
            r = int(dense.rank[i])
            assert int(comp.rank[i]) == r, name
            # compare the spaces (equal energies may reorder rows)
            assert _max_sine(comp.vectors[i, :r], dense.vectors[i, :r]) < 1e-5, name
            assert torch.allclose(comp.spectrum[i, :r], dense.spectrum[i, :r], rtol=1e-4), name
        if name == "projected_svd":
            assert torch.equal(comp.diagnostics["k_in"], dense.diagnostics["k_in"])


def _eye_scores(G, gi, V):
    Q = G.ground_truth_subspaces()["eyes"].double().numpy()
    V = V.double().numpy()
    V = V[np.isfinite(V).all(1)]
    sel = carrying(V[None], gi[None].numpy())[0]
    if not sel.any():
        return float("nan"), 0.0, V[sel]
    return float(subspace_sines(V[sel], Q).max()), subspace_coverage(V[sel], Q), V[sel]


def test_compressed_lowrankgan_recovers_eye_subspace(synthetic):
    """Compressed LowRankGAN (matrix-free pairs + union projections) at λ = 1 against the dense
    path at λ = 0.25 (tests/core/test_ground_truth.py's setting): both recover the eye subspace,
    and their carrying directions span the same space."""
    G, x, masks, J, gi, go, res = synthetic
    comp = compressed_directions("lowrankgan", {"lam": 1.0, "rank_tol": 1e-3}, res.basis_in[:, 0], res.eig_in[:, 0],
                                 res.basis_out[:, 0], res.eig_out[:, 0], res.union_in[:, 0], res.union_out[:, 0])
    dense = get_method("lowrankgan", lam=0.25, rank_tol=1e-3)(gi.float(), go.float())
    for i in range(gi.shape[0]):
        sc, cc, Vc = _eye_scores(G, gi[i], comp.vectors[i])
        sd, cd, Vd = _eye_scores(G, gi[i], dense.vectors[i])
        between = _max_sine(torch.as_tensor(Vc), torch.as_tensor(Vd)) if len(Vc) == len(Vd) else float("nan")
        print(f"sample {i}: compressed sine {sc:.2e} coverage {cc:.3f} ({len(Vc)} rows, rank_B "
              f"{int(comp.diagnostics['rank_B'][i])}); dense sine {sd:.2e} coverage {cd:.3f} ({len(Vd)} rows); "
              f"compressed vs dense {between:.2e}")
        assert len(Vc) >= 1 and sc < 0.05 and cc >= 0.5
        assert len(Vc) == len(Vd) and between < 0.05


def test_compressed_lowrankgan_small_lambda_records(synthetic):
    """Recorded: PCP's ℓ1 term is not rotation invariant and the compressed problem has a higher
    rank-to-size ratio (rank M_B = 20 in k' = 48 coordinates vs 64 latent axes), so at the dense
    path's λ = 0.25 the compressed optimum moves rest structure into S (rank_B > 20) and the
    directions leave the eye subspace.  From λ ≈ 1 the two paths agree (previous test)."""
    G, x, masks, J, gi, go, res = synthetic
    comp = compressed_directions("lowrankgan", {"lam": 0.25, "rank_tol": 1e-3}, res.basis_in[:, 0],
                                 res.eig_in[:, 0], res.basis_out[:, 0], res.eig_out[:, 0], res.union_in[:, 0],
                                 res.union_out[:, 0])
    ranks = comp.diagnostics["rank_B"].tolist()
    sines = [_eye_scores(G, gi[i], comp.vectors[i])[0] for i in range(gi.shape[0])]
    print("compressed lowrankgan at lam=0.25: rank_B", ranks, "max sines", sines)
    assert all(r > 20 for r in ranks)


def test_config_and_method_errors():
    with pytest.raises(ValueError, match="matfree.k"):
        MatFreeConfig(k=0)
    with pytest.raises(ValueError, match="max_basis"):
        MatFreeConfig(k=4, oversample=2, max_basis=5)
    z = torch.zeros(1, 2, 4)
    with pytest.raises(ValueError, match="needs dense Grams"):
        compressed_directions("resefa", {}, z, z[..., 0], z, z[..., 0])
    with pytest.raises(ValueError, match="union"):
        compressed_directions("lowrankgan", {}, z, z[..., 0], z, z[..., 0])


def test_empty_region_is_not_finite():
    G = build_generator("synthetic", {"latent_dim": 16, "resolution": 16, "seed": 0,
                                      "parts": {"background": 2, "face": 2, "hair": 2, "eyes": 2, "mouth": 2,
                                                "layout": 2, "lighting": 2}})
    x = G.sample_latents(0, [0])
    res = region_subspaces(G, x, torch.zeros(1, 16, 16), (16, 16),
                           cfg=MatFreeConfig(k=2, oversample=2, max_blocks=2))
    assert not bool(res.finite[0]) and bool(torch.isnan(res.eig_in).all())
