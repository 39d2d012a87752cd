"""The paper's ADMM (Candès et al. Alg. 1, fixed μ; LowRankGAN ``RobustPCA.fit``), exactly."""
from __future__ import annotations

import torch
from torch import Tensor

from lrgan_dist.core.rpca.certificate import _gap
from lrgan_dist.core.rpca.config import RPCAConfig, RPCAResult, _finish
from lrgan_dist.core.rpca.linalg import _shrink, _svt


def _solve_reference(M_all: Tensor, fro_all: Tensor, out: RPCAResult, idx: Tensor, lam: float,
                     tol: float, cfg: RPCAConfig, symmetric: bool) -> None:
    M = M_all[idx]
    fro = fro_all[idx]
    mu = out.mu[idx]
    lam_t = out.lam[idx]
    S = torch.zeros_like(M)
    Y = torch.zeros_like(M)
    for it in range(1, cfg.max_iter + 1):
        mu3 = mu[:, None, None]
        X = M - S + Y / mu3
        L, sv, vh = _svt(X, 1.0 / mu, symmetric)
        Yl = mu3 * (X - L)  # ∈ ∂‖L‖_*: the dual candidate of the certificate
        S = _shrink(M - L + Y / mu3, (lam_t / mu)[:, None, None])
        R = M - L - S
        Y = Y + mu3 * R
        res = torch.linalg.matrix_norm(R) / fro
        conv = res <= tol
        done = conv | (it == cfg.max_iter)
        if bool(done.any()):
            d = done
            _finish(out, idx[d], M[d], L[d], S[d], sv[d], vh[d], it, res[d], conv[d],
                    _gap(M[d], L[d], sv[d], Yl[d], lam_t[d]), lam)
            keep = ~done
            if not bool(keep.any()):
                return
            idx, M, fro, mu, lam_t, S, Y = (t[keep] for t in (idx, M, fro, mu, lam_t, S, Y))
