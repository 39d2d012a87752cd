"""projected_svd (LOCO-Edit's rule) against an independent numpy computation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrgan_dist.core.methods import get_method


def _psd(rng: np.random.Generator, d: int, rank: int) -> np.ndarray:
    A = rng.standard_normal((rank, d)) * np.linspace(3, 0.5, rank)[:, None]
    return A.T @ A


def _numpy_reference(Mr: np.ndarray, Mb: np.ndarray, e_in: float, e_out: float) -> tuple[np.ndarray, np.ndarray]:
    a, U = np.linalg.eigh(Mr)
    a, U = a[::-1], U[:, ::-1]
    b, W = np.linalg.eigh(Mb)
    b, W = b[::-1], W[:, ::-1]
    k_r = next(k for k in range(1, len(a) + 1) if a[:k].clip(0).sum() >= e_in * a.clip(0).sum() * (1 - 1e-12))
    k_b = next(k for k in range(1, len(b) + 1) if b[:k].clip(0).sum() >= e_out * b.clip(0).sum() * (1 - 1e-12))
    Wk = W[:, :k_b]
    rows = []
    for i in range(k_r):
        v = U[:, i] - Wk @ (Wk.T @ U[:, i])
        if np.linalg.norm(v) > 1e-6:
            rows.append(v / np.linalg.norm(v))
    D = np.array(rows)
    e = np.einsum("kd,de,ke->k", D, Mr, D)
    order = np.argsort(-e, kind="stable")
    return D[order], e[order]


@pytest.mark.parametrize("e_in,e_out", [(0.95, 0.95), (0.9, 0.99), (1.0, 0.8)])
def test_matches_numpy(e_in: float, e_out: float) -> None:
    rng = np.random.default_rng(0)
    d = 12
    Mr = np.stack([_psd(rng, d, 5), _psd(rng, d, 8)])
    Mb = np.stack([_psd(rng, d, 6), _psd(rng, d, 12)])
    res = get_method("projected_svd", energy_in=e_in, energy_out=e_out)(torch.as_tensor(Mr), torch.as_tensor(Mb))
    for i in range(2):
        D, e = _numpy_reference(Mr[i], Mb[i], e_in, e_out)
        r = int(res.rank[i])
        assert r == len(D)
        V = res.vectors[i, :r].double().numpy()
        # rows agree up to sign
        assert np.allclose(np.abs((V * D).sum(1)), 1.0, atol=1e-5)
        assert np.allclose(res.spectrum[i, :r].double().numpy(), e, rtol=1e-4, atol=1e-8)
        assert np.isnan(res.vectors[i, r:].numpy()).all()
        # every kept row is orthogonal to the rest's top-k_B subspace
        b, W = np.linalg.eigh(Mb[i])
        kb = int(res.diagnostics["k_out"][i])
        Wk = W[:, ::-1][:, :kb]
        assert np.abs(V @ Wk).max() < 1e-5


def test_exact_split_and_full_rest() -> None:
    """Region and rest on disjoint coordinates: the directions are the region's own; a
    rest whose top subspace is everything leaves nothing (rank 0)."""
    d = 6
    Mr = np.diag([4.0, 2.0, 0, 0, 0, 0])
    Mb = np.diag([0, 0, 3.0, 2.0, 1.0, 0.5])
    res = get_method("projected_svd", energy_in=0.99, energy_out=0.99)(torch.as_tensor(Mr)[None], torch.as_tensor(Mb)[None])
    assert int(res.rank[0]) == 2
    assert np.allclose(np.abs(res.vectors[0, :2].numpy()), np.eye(d)[:2], atol=1e-6)
    res = get_method("projected_svd", energy_out=1.0)(torch.eye(d, dtype=torch.float64)[None],
                                                      torch.eye(d, dtype=torch.float64)[None])
    assert int(res.rank[0]) == 0


def test_nonfinite_and_bad_params() -> None:
    g = torch.full((1, 4, 4), float("nan"), dtype=torch.float64)
    res = get_method("projected_svd")(g, g)
    assert int(res.rank[0]) == 0 and int(res.diagnostics["k_in"][0]) == -1
    for bad in (0, 1.5, True, "x"):
        with pytest.raises(ValueError, match="projected_svd.energy_in"):
            get_method("projected_svd", energy_in=bad)
