"""Realized-edit metrics against independent computations on a hand-made image pair."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lrgan_dist.core.edit_metrics import (
    grassmann_distance,
    in_region_change,
    masked_mse,
    precision_at_n,
    realized_locality,
)


def _pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4x4, 2 channels: the edit changes pixels (0,0) by 2, (0,1) by 1, (3,3) by 3 (both channels)."""
    x0 = np.zeros((2, 4, 4))
    x1 = x0.copy()
    x1[:, 0, 0] = 2.0
    x1[:, 0, 1] = 1.0
    x1[:, 3, 3] = 3.0
    R = np.zeros((4, 4))
    R[0:2, 0:2] = 1.0  # region: top-left 2x2 (4 pixels)
    return x0, x1, R


def test_masked_mse_by_hand() -> None:
    x0, x1, R = _pair()
    mse_in, mse_out = masked_mse(x0, x1, R)
    # inside: (4 + 1 + 0 + 0) / 4; outside: 9 / 12
    assert mse_in == pytest.approx(5 / 4)
    assert mse_out == pytest.approx(9 / 12)
    assert in_region_change(x0, x1, R) == pytest.approx(math.sqrt(5 / 4))
    assert realized_locality(x0, x1, R) == pytest.approx(5 / 14)


def test_precision_at_n_by_hand() -> None:
    x0, x1, R = _pair()
    # N = |R| = 4; most changed: (3,3)=9 [out], (0,0)=4 [in], (0,1)=1 [in], then a tie at 0
    # broken by pixel index: pixel 0 is (0,0) already taken -> next index 2 (0,2) [out]
    assert precision_at_n(x0, x1, R) == pytest.approx(2 / 4)
    # soft mask: N = round(sum R) = 2, top-2 = (3,3), (0,0) with memberships 0.5, 1.0
    S = np.zeros((4, 4))
    S[0, 0], S[3, 3], S[1, 1] = 1.0, 0.5, 0.5
    assert precision_at_n(x0, x1, S) == pytest.approx((0.5 + 1.0) / 2)


def test_batched_and_undefined() -> None:
    x0, x1, R = _pair()
    X0, X1 = np.stack([x0, x0]), np.stack([x1, x0])  # second edit changes nothing
    p = precision_at_n(X0, X1, R)
    assert p.shape == (2,) and p[0] == pytest.approx(0.5)
    assert np.isnan(realized_locality(X0, X1, R)[1])
    assert np.isnan(masked_mse(x0, x1, np.zeros((4, 4)))[0])
    with pytest.raises(ValueError, match="mask"):
        masked_mse(x0, x1, np.ones((3, 3)))


def test_grassmann_distance() -> None:
    e = np.eye(4)
    assert grassmann_distance(e[:2], e[:2]) == pytest.approx(0.0, abs=1e-7)
    assert grassmann_distance(e[:2], e[2:]) == pytest.approx(math.pi / 2 * math.sqrt(2))
    t = 0.3
    B = np.stack([np.cos(t) * e[0] + np.sin(t) * e[2], e[1]])
    assert grassmann_distance(e[:2], B) == pytest.approx(t, abs=1e-7)
    # independent: principal angles via scipy
    from scipy.linalg import subspace_angles

    rng = np.random.default_rng(1)
    A, C = rng.standard_normal((3, 7)), rng.standard_normal((3, 7))
    ref = np.sqrt((subspace_angles(A.T, C.T) ** 2).sum())
    assert grassmann_distance(2 * A, C) == pytest.approx(ref, abs=1e-7)
    assert math.isnan(grassmann_distance(np.full((2, 4), np.nan), e[:2]))
