"""Method registry and the conformance suite every direction method must pass.

Equivalence checks against independent computations: scipy's generalised symmetric
eigensolver (resefa), numpy eigh (jacobian_svd), numpy PCA (ganspace), and
``lowrank.lowrankgan_directions`` (lowrankgan).
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.linalg
import torch

from lrgan_dist.core.lowrankgan import lowrankgan_directions
from lrgan_dist.core.methods import (
    DirectionResult,
    Method,
    available_methods,
    get_method,
    register_method,
)
from lrgan_dist.core.rpca import RPCAConfig

PER_SAMPLE = [m for m in ("lowrankgan", "resefa", "jacobian_svd")]


def grams(d=16, B=3, seed=0):
    """Structured PSD Gram pairs [B, d, d] (region / rest) from random local Jacobians."""
    rng = np.random.default_rng(seed)
    P = 12 * 12
    yy, xx = np.mgrid[0:12, 0:12] / 12
    out_R, out_B = [], []
    for _ in range(B):
        J = np.zeros((P, d))
        for p in range(3):
            cy, cx = rng.uniform(0.2, 0.8, 2)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02).ravel()
            J += (rng.standard_normal((P, 3)) * blob[:, None]) @ rng.standard_normal((3, d))
        J += 0.05 * rng.standard_normal((P, d))
        R = np.zeros((12, 12))
        R[:6, :6] = 1
        R = R.ravel()
        out_R.append((J.T * R) @ J / R.sum())
        out_B.append((J.T * (1 - R)) @ J / (1 - R).sum())
    return torch.tensor(np.stack(out_R)), torch.tensor(np.stack(out_B))


def rank_deficient(d=16):
    v = torch.linspace(-1, 1, d, dtype=torch.float64)
    w = torch.cos(torch.arange(d, dtype=torch.float64))
    one = torch.outer(v, v)
    zero = torch.zeros(d, d, dtype=torch.float64)
    M_R = torch.stack([zero, one, one, zero, torch.outer(w, w) + one])
    M_B = torch.stack([one, zero, one, zero, zero])
    return M_R, M_B


def check_result(res: DirectionResult, B: int, d: int) -> None:
    """The DirectionResult contract (DESIGN.md §4 and methods.py)."""
    assert isinstance(res, DirectionResult)
    assert res.vectors.shape == (B, d, d) and res.vectors.dtype == torch.float32
    assert res.rank.shape == (B,) and res.rank.dtype == torch.int32
    assert res.spectrum.shape == (B, d) and res.spectrum.dtype == torch.float32
    for k, v in res.diagnostics.items():
        assert isinstance(v, torch.Tensor) and v.shape[0] == B, k
    for b in range(B):
        r = int(res.rank[b])
        assert 0 <= r <= d
        V = res.vectors[b]
        assert torch.isfinite(V[:r]).all(), "valid rows must be finite"
        assert torch.isnan(V[r:]).all(), "rows beyond rank must be NaN"
        if r:
            np.testing.assert_allclose(torch.linalg.vector_norm(V[:r], dim=-1).numpy(), 1.0, atol=1e-5)
            # deterministic sign convention: the largest-magnitude entry is positive (ties: any)
            top = V[:r].abs() >= V[:r].abs().amax(-1, keepdim=True) - 1e-6
            assert ((V[:r] > 0) & top).any(-1).all()
        s = res.spectrum[b]
        fin = s[torch.isfinite(s)]
        assert torch.isnan(s[len(fin):]).all(), "spectrum is NaN-padded at the end"
        if len(fin):
            assert (fin[1:] <= fin[:-1] + 1e-6 * fin.abs().max()).all(), "descending"


def same(a: DirectionResult, b: DirectionResult) -> None:
    torch.testing.assert_close(a.vectors, b.vectors, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(a.spectrum, b.spectrum, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(a.rank, b.rank)


# ----------------------------------------------------------------------------- registry


def test_registry_lists_methods():
    assert set(available_methods()) >= {"lowrankgan", "resefa", "jacobian_svd", "ganspace"}


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown method 'sefa2'.*lowrankgan.*resefa"):
        get_method("sefa2")


def test_unknown_param_names_it_and_lists_valid():
    with pytest.raises(ValueError, match=r"unknown parameter 'lamda'.*valid parameters.*'lam'"):
        get_method("lowrankgan", lamda=0.1)


def test_bad_param_values():
    with pytest.raises(ValueError, match="lowrankgan.relax"):
        get_method("lowrankgan", relax=-1)
    with pytest.raises(ValueError, match="mu"):
        get_method("lowrankgan", mu="entrywise")
    with pytest.raises(ValueError, match="resefa.tau"):
        get_method("resefa", tau=0.0)
    with pytest.raises(ValueError, match="rank_tol"):
        get_method("jacobian_svd", rank_tol="loose")


def test_param_hash_is_stable_and_sensitive():
    h = get_method("lowrankgan").param_hash()
    assert re.fullmatch(r"[0-9a-f]{12}", h)
    assert h == get_method("lowrankgan").param_hash()
    assert h != get_method("lowrankgan", lam=1 / 60).param_hash()
    assert h != get_method("resefa").param_hash()
    # pinned: changing a default or a field name changes stored fingerprints; do it on purpose
    assert get_method("jacobian_svd").param_hash() == _pinned_jacobian_svd_hash()


def _pinned_jacobian_svd_hash() -> str:
    import hashlib
    import json

    blob = json.dumps({"name": "jacobian_svd", "params": {"rank_tol": 1e-6}}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def test_register_twice_refused():
    with pytest.raises(RuntimeError, match="registered twice"):

        @register_method("lowrankgan")
        class Other(Method):  # noqa: F841
            pass


def test_population_only_flags():
    assert get_method("ganspace").population_only
    assert not any(get_method(m).population_only for m in PER_SAMPLE)
    with pytest.raises(TypeError, match="from_latents"):
        M_R, M_B = grams(8, 1)
        get_method("ganspace")(M_R, M_B)


# ----------------------------------------------------------------------------- conformance


@pytest.fixture(scope="module")
def data():
    return grams(16, 3, seed=3)


@pytest.mark.parametrize("name", PER_SAMPLE)
def test_conformance_shapes_units_order(name, data):
    M_R, M_B = data
    res = get_method(name)(M_R, M_B)
    check_result(res, 3, 16)
    assert (res.rank > 0).all()


@pytest.mark.parametrize("name", PER_SAMPLE)
def test_conformance_deterministic(name, data):
    M_R, M_B = data
    m = get_method(name)
    same(m(M_R, M_B), m(M_R, M_B))
    # and independent of the batch it is computed in
    one = m(M_R[1:2], M_B[1:2])
    np.testing.assert_allclose(one.rank.numpy(), m(M_R, M_B).rank[1:2].numpy())


@pytest.mark.parametrize("name", PER_SAMPLE)
def test_conformance_rank_deficient_is_nan_free(name):
    M_R, M_B = rank_deficient(16)
    res = get_method(name)(M_R, M_B)
    check_result(res, 5, 16)
    assert res.rank[0] == 0 and res.rank[3] == 0  # zero region Gram: nothing changes R
    assert res.rank[1] >= 1


@pytest.mark.parametrize("name", PER_SAMPLE)
def test_conformance_float32_input_and_shape_errors(name, data):
    M_R, M_B = data
    check_result(get_method(name)(M_R.float(), M_B.float()), 3, 16)
    with pytest.raises(ValueError, match=r"gram_out: expected shape \[3, 16, 16\]"):
        get_method(name)(M_R, M_B[:, :8])
    with pytest.raises(ValueError, match=r"gram_in: expected shape"):
        get_method(name)(M_R[0], M_B[0])


@pytest.mark.parametrize("name", PER_SAMPLE)
def test_conformance_nonfinite_input_gives_no_directions(name, data):
    M_R, M_B = (t.clone() for t in data)
    M_R[0, 0, 0] = float("nan")
    res = get_method(name)(M_R, M_B)
    check_result(res, 3, 16)
    assert res.rank[0] == 0
    assert (res.rank[1:] > 0).all()


def test_ganspace_conformance():
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.standard_normal((200, 8)) * np.arange(8, 0, -1), dtype=torch.float32)
    m = get_method("ganspace")
    res = m.from_latents(X)
    check_result(res, 1, 8)
    assert res.rank.item() == 8
    same(res, m.from_latents(X))
    # rank-deficient: 3 samples in 8-d, and collinear samples
    low = m.from_latents(X[:3])
    check_result(low, 1, 8)
    assert low.rank.item() == 2
    col = m.from_latents(torch.outer(torch.arange(5.0), torch.ones(8)))
    check_result(col, 1, 8)
    assert col.rank.item() == 1
    with pytest.raises(ValueError, match=r"latents: expected shape"):
        m.from_latents(X[None])


# ----------------------------------------------------------------------------- equivalences


def test_resefa_matches_scipy_generalized_eigh(data):
    M_R, M_B = data
    res = get_method("resefa")(M_R, M_B)
    d = 16
    for b in range(3):
        A = M_R[b].numpy()
        Bm = M_B[b].numpy()
        Breg = Bm + 1e-3 * np.trace(Bm) / d * np.eye(d)
        w, V = scipy.linalg.eigh(A, Breg)
        w, V = w[::-1], V[:, ::-1]
        np.testing.assert_allclose(res.spectrum[b].numpy(), w, rtol=1e-4)
        V = V / np.linalg.norm(V, axis=0)
        cos = np.abs((res.vectors[b].numpy().astype(np.float64) * V.T).sum(1))
        np.testing.assert_allclose(cos[:5], 1.0, atol=1e-5)
        # the Rayleigh quotient is maximised by the first direction
        v = res.vectors[b, 0].double().numpy()
        assert v @ A @ v / (v @ Breg @ v) == pytest.approx(w[0], rel=1e-5)


def test_resefa_trace_scale_and_zero_rest():
    M_R, M_B = grams(8, 1, seed=2)
    r_mean = get_method("resefa")(M_R, M_B)
    r_tr = get_method("resefa", scale="trace")(M_R, M_B)
    np.testing.assert_allclose(r_tr.diagnostics["ridge"].numpy(), 8 * r_mean.diagnostics["ridge"].numpy(),
                               rtol=1e-6)
    r0 = get_method("resefa")(M_R, torch.zeros_like(M_B))  # ridge falls back to tr(M_R)
    check_result(r0, 1, 8)
    assert r0.diagnostics["ridge"].item() > 0


def test_jacobian_svd_matches_numpy(data):
    M_R, M_B = data
    res = get_method("jacobian_svd")(M_R, M_B)
    for b in range(3):
        w, V = np.linalg.eigh(M_R[b].numpy())
        np.testing.assert_allclose(res.spectrum[b].numpy(), w[::-1], rtol=1e-5, atol=1e-7 * w.max())
        cos = np.abs((res.vectors[b, :4].double().numpy() * V[:, ::-1][:, :4].T).sum(1))
        np.testing.assert_allclose(cos, 1.0, atol=1e-6)
    # gram_out is ignored
    same(res, get_method("jacobian_svd")(M_R, torch.zeros_like(M_B)))


def test_ganspace_matches_numpy_pca():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6))
    res = get_method("ganspace").from_latents(torch.tensor(X))
    Xc = X - X.mean(0)
    w, V = np.linalg.eigh(np.cov(Xc.T))
    np.testing.assert_allclose(res.spectrum[0].numpy(), w[::-1], rtol=1e-5)
    cos = np.abs((res.vectors[0].double().numpy() * V[:, ::-1].T).sum(1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-5)


def test_lowrankgan_method_wraps_lowrank(data):
    M_R, M_B = data
    m = get_method("lowrankgan", lam=0.3, relax=1, rank_tol=1e-3)
    res = m(M_R, M_B)
    ref = lowrankgan_directions(M_R, M_B, RPCAConfig(lam=0.3), relax=1, rank_tol=1e-3)
    assert res.rank.tolist() == ref.n_directions.tolist()
    for b in range(3):
        n = int(res.rank[b])
        cos = (res.vectors[b, :n].double() * ref.vectors[b, :n]).sum(-1).abs()
        np.testing.assert_allclose(cos.numpy(), 1.0, atol=1e-6)
        # spectrum: the in-region energies vᵀM_R v of the stored rows, descending (issue 18)
        np.testing.assert_allclose(res.spectrum[b, :n].numpy(), ref.energy[b, :n].numpy(), rtol=1e-6)
        e = np.einsum("kd,de,ke->k", res.vectors[b, :n].double().numpy(), M_R[b].double().numpy(),
                      res.vectors[b, :n].double().numpy())
        np.testing.assert_allclose(res.spectrum[b, :n].numpy(), e, rtol=1e-5)
        assert (np.diff(e) <= 1e-12 * e.max()).all()
        r = int(ref.rank_R[b])
        np.testing.assert_allclose(res.diagnostics["sv_R"][b, :r].numpy(), ref.sv_R[b, :r].numpy(), rtol=1e-6)
    assert res.diagnostics["rank_B"].tolist() == ref.rank_B.tolist()
    assert res.diagnostics["converged_R"].all()
