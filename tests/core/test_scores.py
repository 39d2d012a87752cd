"""Numerics of the transfer study (lrgan_dist.core.scores): against loops, autograd-free
closed forms and scipy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lrgan_dist.core.subspaces import carrying, locality
from lrgan_dist.core.jacobian import region_grams
from lrgan_dist.core.scores import (INERT_FRAC, cluster_order, gram_triu, inert, linearized_transfer, masked_energy,
                                 mean_energy, orth_bases,
                                 quadratic_features, quadratic_forms, quadratic_forms_loop, rankdata,
                                 realized_locality, sample_pairs, source_energy, spearman, subspace_similarity)


def _psd(rng, T, d, rank=None):
    A = rng.normal(size=(T, d, rank or d))
    return A @ A.transpose(0, 2, 1)


def _unit(rng, *shape):
    V = rng.normal(size=shape)
    return V / np.linalg.norm(V, axis=-1, keepdims=True)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 9), T=st.integers(1, 7), d=st.integers(1, 8), block=st.integers(1, 5),
       seed=st.integers(0, 2**31 - 1))
def test_quadratic_forms_match_loop(n, T, d, block, seed):
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(n, d))
    M = _psd(rng, T, d)
    got = quadratic_forms(V, M, block=block, budget_bytes=8 * d * (d + 1) // 2 * 2)  # forces row blocks of 2
    np.testing.assert_allclose(got, quadratic_forms_loop(V, M), rtol=1e-10, atol=1e-10)


def test_quadratic_features_identity():
    rng = np.random.default_rng(0)
    V, M = rng.normal(size=(5, 6)), _psd(rng, 3, 6)
    np.testing.assert_allclose(gram_triu(M) @ quadratic_features(V).T, np.einsum("nd,tde,ne->tn", V, M, V))


def test_quadratic_forms_nan_rows_and_targets():
    rng = np.random.default_rng(1)
    V, M = rng.normal(size=(4, 5)), _psd(rng, 3, 5)
    V[2] = np.nan
    M[1, 0, 0] = np.nan
    q = quadratic_forms(V, M)
    assert np.isnan(q[:, 2]).all() and np.isnan(q[1]).all()
    ref = quadratic_forms_loop(V, M)
    ok = np.isfinite(ref)
    np.testing.assert_allclose(q[ok], ref[ok])
    assert np.isfinite(q[[0, 2]][:, [0, 1, 3]]).all()


def test_quadratic_forms_float32_close():
    rng = np.random.default_rng(2)
    V, M = _unit(rng, 20, 16), _psd(rng, 10, 16)
    np.testing.assert_allclose(quadratic_forms(V, M, dtype=np.float32), quadratic_forms(V, M), rtol=1e-4)


def test_linearized_transfer_matches_evaluate_and_totals():
    rng = np.random.default_rng(3)
    S, k, T, d = 3, 4, 5, 7
    V = _unit(rng, S, k, d)
    V[1, 3] = np.nan  # NaN-padded direction
    gi, go = _psd(rng, T, d, 2), _psd(rng, T, d)
    a_in, a_out = rng.uniform(5, 10, T), rng.uniform(50, 90, T)
    res = linearized_transfer(V, gi, go, a_in, a_out)
    assert res["locality"].shape == (S, T, k)
    for s in range(S):
        for t in range(T):
            ref = locality(V[s], gi[t], go[t])
            np.testing.assert_allclose(res["locality"][s, t], ref, rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(res["total_in"], res["energy_in"] * a_in[None, :, None])
    np.testing.assert_allclose(res["total_out"], res["energy_out"] * a_out[None, :, None])
    fin = np.isfinite(res["locality"])
    assert ((res["locality"][fin] >= 0) & (res["locality"][fin] <= 1)).all()
    assert np.isnan(res["locality"][1, :, 3]).all() and fin.sum() == S * T * k - T


def test_null_space_direction_is_perfectly_local():
    # v orthogonal to the range of M_B: no first-order change outside the region.
    rng = np.random.default_rng(4)
    d = 6
    B = rng.normal(size=(d, 3))
    go = (B @ B.T)[None]
    null = np.linalg.svd(B.T)[2][-1]
    gi = _psd(rng, 1, d)
    res = linearized_transfer(null[None, None], gi, go)
    assert res["locality"][0, 0, 0] == pytest.approx(1.0, abs=1e-12)


def test_mean_energy_and_inert_rule():
    rng = np.random.default_rng(10)
    d = 8
    B = rng.normal(size=(2, d, 3))
    gi = B @ B.transpose(0, 2, 1)  # rank 3
    go = 2 * gi
    me = mean_energy(gi, go)
    np.testing.assert_allclose(me, 3 * np.trace(gi, axis1=1, axis2=2) / d)
    # mean energy = the expected energy of a random unit direction
    V = _unit(rng, 20000, d)
    emp = np.einsum("nd,de,ne->n", V, gi[0] + go[0], V).mean()
    assert emp == pytest.approx(me[0], rel=0.05)
    null = np.linalg.svd(B[0].T)[2][-1]  # no effect at sample 0
    res = linearized_transfer(np.stack([null, V[0]])[None], gi[:1], go[:1])
    dead = inert(res["energy_in"], res["energy_out"], me[None, :1, None])
    assert dead[0, 0].tolist() == [True, False]
    assert inert(np.array([INERT_FRAC * 0.4]), np.array([INERT_FRAC * 0.4]), 1.0)[0]


def test_source_energy_share_and_carrying():
    rng = np.random.default_rng(5)
    V, M = _unit(rng, 4, 6, 6), _psd(rng, 4, 6, 2)
    V[0, 5] = np.nan
    out = source_energy(V, M, 0.01)
    np.testing.assert_allclose(np.nanmax(out["share"], axis=1), 1.0)
    np.testing.assert_array_equal(out["carrying"], carrying(V, M, 0.01))
    assert not out["carrying"][0, 5] and np.isnan(out["share"][0, 5])


def test_realized_energy_equals_gram_form_for_a_linear_generator():
    """The per-pixel normalization of realized edits is the stored Grams' one:
    for y = J x (exactly linear), r_in = vᵀM_R v and r_out = vᵀM_B v at any α."""
    rng = np.random.default_rng(6)
    n, c, h, w, d = 3, 3, 5, 4, 6
    J = torch.as_tensor(rng.normal(size=(n, c, h, w, d)))
    mask = torch.as_tensor(rng.uniform(0, 1, size=(1, n, h, w)))
    gi, go = region_grams(J, mask, dtype=torch.float64)
    v = torch.as_tensor(_unit(rng, d))
    for alpha in (0.01, 3.0):
        delta = alpha * torch.einsum("nchwd,d->nchw", J, v)
        r_in, r_out = masked_energy(delta, mask[0], alpha)
        np.testing.assert_allclose(r_in.numpy(), np.einsum("d,nde,e->n", v.numpy(), gi[:, 0].numpy(), v.numpy()), rtol=1e-10)
        np.testing.assert_allclose(r_out.numpy(), np.einsum("d,nde,e->n", v.numpy(), go[:, 0].numpy(), v.numpy()), rtol=1e-10)
    # static mask [h, w] broadcasts; alpha per row
    d2 = torch.ones(2, 1, h, w)
    r_in, r_out = masked_energy(d2, torch.full((h, w), 0.5), torch.tensor([1.0, 2.0]))
    np.testing.assert_allclose(r_in.numpy(), [1.0, 0.25])
    with pytest.raises(ValueError, match="mask: expected"):
        masked_energy(d2, torch.ones(3, h, w))


def test_realized_locality_averages_signs():
    r_in = np.array([[1.0, 3.0]])
    r_out = np.array([[1.0, 1.0]])
    assert realized_locality(r_in, r_out)[0] == pytest.approx(2.0 / 3.0)
    assert realized_locality(r_in, r_out, axis=None)[0, 0] == pytest.approx(0.5)


def test_subspace_similarity_against_scipy():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(7)
    d = 9
    V = _unit(rng, 4, 5, d)
    keep = np.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]], dtype=bool)
    Q, r = orth_bases(V, keep)
    np.testing.assert_array_equal(r, keep.sum(1))
    sim = subspace_similarity(Q, r)
    for a in range(4):
        for b in range(4):
            A, B = V[a][keep[a]].T, V[b][keep[b]].T
            ang = linalg.subspace_angles(A, B)  # min(r_a, r_b) angles, radians, largest first
            c2 = float((np.cos(ang) ** 2).sum())
            assert sim["similarity"][a, b] == pytest.approx(c2 / max(r[a], r[b]), abs=1e-9)
            Pa = Q[a, : r[a]].T @ Q[a, : r[a]]
            Pb = Q[b, : r[b]].T @ Q[b, : r[b]]
            assert sim["projection_distance"][a, b] == pytest.approx(np.linalg.norm(Pa - Pb) / np.sqrt(2), abs=1e-7)
            want_max = 90.0 if r[a] != r[b] else np.degrees(ang.max())
            assert sim["max_angle"][a, b] == pytest.approx(want_max, abs=1e-5)
            assert sim["min_angle"][a, b] == pytest.approx(np.degrees(ang.min()), abs=1e-5)
    np.testing.assert_allclose(np.diag(sim["similarity"]), 1.0)
    np.testing.assert_allclose(sim["similarity"], sim["similarity"].T, atol=1e-12)


def test_subspace_similarity_empty_subspace_is_nan():
    Q, r = orth_bases(np.full((2, 3, 4), np.nan))
    assert (r == 0).all()
    assert np.isnan(subspace_similarity(Q, r)["similarity"]).all()


def test_cluster_order_keeps_blocks_contiguous():
    rng = np.random.default_rng(8)
    labels = np.repeat([0, 1, 2], [5, 4, 6])
    perm = rng.permutation(labels.size)
    labels = labels[perm]
    pts = np.array([[0, 0], [10, 0], [0, 10]])[labels] + rng.normal(scale=0.3, size=(labels.size, 2))
    D = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    order = cluster_order(D)
    assert sorted(order.tolist()) == list(range(labels.size))
    seq = labels[order]
    assert (np.diff(seq) != 0).sum() == 2  # three contiguous blocks
    np.testing.assert_array_equal(cluster_order(D), order)  # deterministic


def test_cluster_order_small_and_nan():
    assert cluster_order(np.zeros((1, 1))).tolist() == [0]
    D = np.array([[0, np.nan, 1], [np.nan, 0, 5], [1, 5, 0.0]])
    assert sorted(cluster_order(D).tolist()) == [0, 1, 2]


def test_sample_pairs_deterministic_and_bounded():
    p = sample_pairs([3, 1], range(10), 7, seed=4)
    assert p.shape == (7, 2)
    np.testing.assert_array_equal(p, sample_pairs([1, 3], list(reversed(range(10))), 7, seed=4))
    assert len({tuple(x) for x in p}) == 7
    assert set(p[:, 0]) <= {1, 3} and ((p[:, 1] >= 0) & (p[:, 1] < 10)).all()
    assert (np.diff(p[:, 1]) >= 0).all()  # grouped by target
    assert not np.array_equal(p, sample_pairs([1, 3], range(10), 7, seed=5))
    everything = sample_pairs([1, 3], range(10), 1000, seed=0)
    assert everything.shape == (20, 2)
    assert sample_pairs([1], [2], 0, 0).shape == (0, 2)


def test_spearman_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(9)
    a = rng.integers(0, 5, 40).astype(float)  # ties
    b = a + rng.normal(size=40)
    b[3] = np.nan
    ok = np.isfinite(b)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a[ok], b[ok]).statistic, abs=1e-12)
    np.testing.assert_allclose(rankdata(a), stats.rankdata(a))
    assert np.isnan(spearman([1.0, 2.0], [2.0, 1.0]))


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"M: expected shape \[\*, 3, 3\]"):
        quadratic_forms(np.ones((2, 3)), np.ones((2, 4, 4)))
    with pytest.raises(ValueError, match="gram_out"):
        linearized_transfer(np.ones((1, 1, 3)), np.ones((2, 3, 3)), np.ones((1, 3, 3)))
