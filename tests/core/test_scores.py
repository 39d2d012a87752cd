"""Numerics of the transfer study (lrgan_dist.core.scores): against loops, autograd-free
closed forms and scipy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lrgan_dist.core.jacobian import region_grams
from lrgan_dist.core.scores import (
    INERT_FRAC,
    baseline_share,
    cluster_order,
    edit_strength,
    gram_triu,
    headline,
    inert,
    linearized_transfer,
    locality_per_pixel,
    locality_share,
    masked_energy,
    mean_energy,
    quadratic_features,
    quadratic_forms,
    quadratic_forms_loop,
    rankdata,
    realized_locality,
    sample_pairs,
    spearman,
)
from lrgan_dist.core.subspaces import (
    carrying,
    orth,
    orth_bases,
    paired_subspace_similarity,
    source_energy,
    subspace_similarity,
)


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
            e_in = np.array([v @ gi[t] @ v for v in V[s]])
            e_out = np.array([v @ go[t] @ v for v in V[s]])
            np.testing.assert_allclose(res["locality_per_pixel"][s, t], e_in / (e_in + e_out), rtol=1e-10,
                                       equal_nan=True)
            share = a_in[t] * e_in / (a_in[t] * e_in + a_out[t] * e_out)
            np.testing.assert_allclose(res["locality"][s, t], share, rtol=1e-10, equal_nan=True)
            tr_i, tr_o = np.trace(gi[t]), np.trace(go[t])
            assert res["baseline"][t] == pytest.approx(a_in[t] * tr_i / (a_in[t] * tr_i + a_out[t] * tr_o))
            strength = (a_in[t] * e_in + a_out[t] * e_out) / ((a_in[t] * tr_i + a_out[t] * tr_o) / d)
            np.testing.assert_allclose(res["strength"][s, t], strength, rtol=1e-10, equal_nan=True)
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
    res = linearized_transfer(null[None, None], gi, go, np.array([3.0]), np.array([97.0]))
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
    res = linearized_transfer(np.stack([null, V[0]])[None], gi[:1], go[:1], np.ones(1), np.ones(1))
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
    assert realized_locality(r_in, r_out, 1.0, 1.0)[0] == pytest.approx(2.0 / 3.0)
    assert realized_locality(r_in, r_out, 1.0, 1.0, axis=None)[0, 0] == pytest.approx(0.5)
    # the share: areas ΣR = 1, ΣB = 3 → 2·1 / (2·1 + 1·3)
    assert realized_locality(r_in, r_out, 1.0, 3.0)[0] == pytest.approx(2.0 / 5.0)


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


def test_paired_similarity_is_the_diagonal_of_the_full_one():
    rng = np.random.default_rng(3)
    V, W = _unit(rng, 6, 4, 7), _unit(rng, 6, 4, 7)
    ka = rng.random((6, 4)) < 0.6
    kb = rng.random((6, 4)) < 0.6
    kb[0] = False  # an empty subspace: NaN
    (Qa, ra), (Qb, rb) = orth_bases(V, ka), orth_bases(W, kb)
    full = subspace_similarity(Qa, ra, Qb, rb, block=4)
    pair = paired_subspace_similarity(Qa, ra, Qb, rb)
    for key in ("similarity", "projection_distance", "max_angle", "min_angle"):
        np.testing.assert_allclose(pair[key], np.diag(full[key]), atol=1e-12, equal_nan=True, err_msg=key)
    assert np.isnan(pair["similarity"][0])
    with pytest.raises(ValueError, match="expected as many"):
        paired_subspace_similarity(Qa, ra, Qb[:2], rb[:2])


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
        linearized_transfer(np.ones((1, 1, 3)), np.ones((2, 3, 3)), np.ones((1, 3, 3)), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="area_in"):
        linearized_transfer(np.ones((1, 1, 3)), np.ones((2, 3, 3)), np.ones((2, 3, 3)), np.ones(3), np.ones(2))


def test_locality_share_vs_per_pixel_on_a_box_by_hand():
    """Issue 18: the headline locality is the SHARE of the first-order change inside R, not
    the per-pixel ratio of the area-normalised Grams. Hand computation on a 3×2 box of a 4×5
    grid (ΣR = 6 of 20 pixels, not half the image), with J built so that every number is exact."""
    h, w, d = 4, 5, 2
    R = np.zeros((h, w))
    R[1:4, 1:3] = 1.0  # 6 pixels
    # one channel; direction e0 changes every pixel by 1, e1 changes only the box by 2
    J = np.zeros((h, w, d))
    J[..., 0] = 1.0
    J[..., 1] = 2.0 * R
    Jf = J.reshape(-1, d)
    r = R.ravel()
    gi = (Jf.T * r) @ Jf / r.sum()  # M_R = Jᵀ diag(R) J / ΣR
    go = (Jf.T * (1 - r)) @ Jf / (1 - r).sum()
    a_in, a_out = np.array([6.0]), np.array([14.0])
    v = np.array([1.0, 1.0]) / np.sqrt(2)  # J v = 3/√2 in the box, 1/√2 outside
    res = linearized_transfer(v[None, None], gi[None], go[None], a_in, a_out)
    # by hand: per pixel e_in = 9/2, e_out = 1/2; totals 6·9/2 = 27 and 14·1/2 = 7
    assert res["energy_in"][0, 0, 0] == pytest.approx(4.5) and res["energy_out"][0, 0, 0] == pytest.approx(0.5)
    assert res["locality_per_pixel"][0, 0, 0] == pytest.approx(0.9)
    assert res["locality"][0, 0, 0] == pytest.approx(27 / 34)
    # the direct definition: share of Σ_p ‖(J v)_p‖² inside R
    jv2 = (Jf @ v) ** 2
    assert res["locality"][0, 0, 0] == pytest.approx(float((jv2 * r).sum() / jv2.sum()))
    # random baseline: tr M_R = 1 + 4 = 5 (per pixel in R), tr M_B = 1 → 6·5 / (6·5 + 14·1) = 30/44
    assert res["baseline"][0] == pytest.approx(30 / 44)
    # per pixel the same random direction would read 5/6 — far above its share
    assert locality_per_pixel(np.trace(gi), np.trace(go)) == pytest.approx(5 / 6)
    assert baseline_share(np.trace(gi), np.trace(go), 6.0, 14.0) == pytest.approx(30 / 44)
    # strength: ‖J v‖² = 34 against a random direction's E‖J u‖² = tr(JᵀJ)/d = (20 + 24)/2 = 22
    assert res["strength"][0, 0, 0] == pytest.approx(34 / 22)
    assert edit_strength(4.5, 0.5, 5.0, 1.0, 6.0, 14.0, d) == pytest.approx(34 / 22)
    assert locality_share(4.5, 0.5, 6.0, 14.0) == pytest.approx(27 / 34)


def test_headline_means_over_carrying_non_inert_rows():
    loc = np.array([[0.9, 0.5, 0.2], [0.8, np.nan, 0.1]])
    carry = np.array([[True, True, False], [True, True, True]])
    dead = np.array([[False, False, False], [False, False, True]])
    selfp = np.array([[True], [False]])
    base = np.array([[0.3], [0.4]])
    strength = np.array([[2.0, 4.0, 9.0], [1.0, 5.0, 7.0]])
    out = headline(loc, carry, dead, selfp, baseline=base, strength=strength)
    assert out["self_locality"] == pytest.approx(0.7) and out["cross_locality"] == pytest.approx(0.8)
    assert out["self_baseline"] == pytest.approx(0.3) and out["cross_baseline"] == pytest.approx(0.4)
    assert out["self_strength"] == pytest.approx(3.0) and out["cross_strength"] == pytest.approx(1.0)
    assert np.isnan(headline(loc, np.zeros_like(carry), dead, selfp)["cross_locality"])


def test_one_orth_policy_drops_float32_rounding_keeps_small_angles():
    """Issue 12: one orthonormal-basis policy (ORTH_TOL relative to unit rows) for consensus
    and similarity: a float32-rounded copy of a row is not a new dimension, a 0.1° tilt is."""
    rng = np.random.default_rng(11)
    d = 16
    V = _unit(rng, 3, d)
    dup = (V[0] + 1e-7 * rng.normal(size=d)).astype(np.float32).astype(np.float64)
    assert orth(np.vstack([V, dup])).shape[0] == 3
    t = np.deg2rad(0.1)
    u = V[1] - (V[1] @ V[0]) * V[0]
    u /= np.linalg.norm(u)
    tilt = np.cos(t) * V[0] + np.sin(t) * u
    assert orth(np.vstack([V[:1], tilt])).shape[0] == 2
    # the batched and single forms agree, rows are scaled to unit length first
    Q, r = orth_bases(np.stack([np.vstack([V, dup]), np.vstack([5 * V[:1], tilt, np.full(d, np.nan), V[2]])]))
    assert r.tolist() == [3, 3]
    B = orth(np.vstack([V, dup]))
    np.testing.assert_allclose(Q[0, :3] @ Q[0, :3].T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(B.T @ B, Q[0, :3].T @ Q[0, :3], atol=1e-10)


def test_carrying_rule_has_an_absolute_floor():
    """Issue 18: a sample whose every direction is inert (≪ a random direction's change) has
    no carrying direction, however its rows compare with each other."""
    d = 6
    M = np.diag([1.0, 1.0, 1.0, 1.0, 1e-9, 0.0])[None]
    V = np.eye(d)[None, [4, 5]]  # energies 1e-9 and 0 against tr M / d = 4/6
    assert not carrying(V, M).any()
    V2 = np.eye(d)[None, [0, 4]]
    assert carrying(V2, M).tolist() == [[True, False]]
    se = source_energy(V2, M)
    assert se["relative"][0, 0] == pytest.approx(1.5)
