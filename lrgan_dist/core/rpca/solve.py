"""Entry point :func:`rpca`: validation, dtype/structure handling and solver dispatch."""
from __future__ import annotations

import torch
from torch import Tensor

from lrgan_dist.core.rpca.config import (
    RPCAConfig,
    RPCAResult,
    default_lam,
    mu_from_rule,
)
from lrgan_dist.core.rpca.fast import _solve_fast
from lrgan_dist.core.rpca.ialm import _solve_ialm
from lrgan_dist.core.rpca.reference import _solve_reference


def _prepare(M: Tensor, cfg: RPCAConfig) -> tuple[Tensor, bool]:
    if not isinstance(M, Tensor):
        raise TypeError(f"rpca: M must be a torch.Tensor, received {type(M).__name__}")
    if M.ndim == 2:
        M = M[None]
    if M.ndim != 3:
        raise ValueError(f"rpca: M: expected shape [B, n1, n2] or [n1, n2], received {list(M.shape)}")
    if not M.is_floating_point():
        raise ValueError(f"rpca: M: expected a floating-point tensor, received {M.dtype}")
    dtype = {"float64": torch.float64, "float32": torch.float32, "input": M.dtype}[cfg.dtype]
    M = M.to(dtype)
    square = M.shape[-1] == M.shape[-2]
    if cfg.structure == "symmetric":
        if not square:
            raise ValueError(f"rpca: structure='symmetric' needs square matrices, received {list(M.shape)}")
        symmetric = True
    elif cfg.structure == "general":
        symmetric = False
    else:
        symmetric = False
        if square:
            finite = torch.isfinite(M).all((-2, -1))
            asym = torch.linalg.matrix_norm(torch.where(finite[:, None, None], M - M.mT, 0))
            fro = torch.linalg.matrix_norm(torch.where(finite[:, None, None], M, 0))
            symmetric = bool((asym <= 1e-5 * fro).all())
    if symmetric:
        M = 0.5 * (M + M.mT)
    return M, symmetric


def rpca(M: Tensor, cfg: RPCAConfig = RPCAConfig()) -> RPCAResult:
    """Solve (PCP) for every problem of a batch.

    M: [B, n₁, n₂] or [n₁, n₂] (treated as B = 1; the result is always batched).  The
    device follows M; the dtype of the iteration is ``cfg.dtype``.  Problems leave the
    batch as soon as they meet the stopping rule.  An all-zero M returns L = S = 0
    (converged, 0 iterations); a non-finite M returns NaN (not converged, 0 iterations).
    """
    if not isinstance(cfg, RPCAConfig):
        raise TypeError(f"rpca: cfg must be an RPCAConfig, received {type(cfg).__name__}")
    M, symmetric = _prepare(M, cfg)
    B, n1, n2 = M.shape
    k = min(n1, n2)
    dt, dev = M.dtype, M.device
    lam = cfg.lam if cfg.lam is not None else default_lam(n1, n2)
    tol = max(cfg.tol, 10 * torch.finfo(dt).eps) if dt != torch.float64 else cfg.tol

    out = RPCAResult(
        L=torch.zeros_like(M), S=torch.zeros_like(M),
        iterations=torch.zeros(B, dtype=torch.int64, device=dev),
        residual=torch.zeros(B, dtype=dt, device=dev),
        converged=torch.ones(B, dtype=torch.bool, device=dev),
        sv=torch.zeros(B, k, dtype=dt, device=dev),
        vh=torch.eye(k, n2, dtype=dt, device=dev).expand(B, k, n2).clone(),
        l1=torch.zeros(B, dtype=dt, device=dev),
        objective=torch.zeros(B, dtype=dt, device=dev),
        gap=torch.zeros(B, dtype=dt, device=dev),
        lam=torch.full((B,), lam, dtype=dt, device=dev),
        mu=mu_from_rule(M, cfg.mu),
        config=cfg,
    )
    finite = torch.isfinite(M).all((-2, -1))
    fro = torch.linalg.matrix_norm(torch.where(finite[:, None, None], M, 0))
    bad = ~finite
    if bad.any():
        for t in (out.L, out.S, out.sv, out.vh):
            t[bad] = float("nan")
        for t in (out.residual, out.l1, out.objective, out.gap, out.mu):
            t[bad] = float("nan")
        out.converged[bad] = False
    active = torch.nonzero(finite & (fro > 0)).flatten()
    if active.numel() == 0:
        return out
    solve = {"reference": _solve_reference, "fast": _solve_fast, "ialm": _solve_ialm}[cfg.solver]
    solve(M, fro, out, active, lam, tol, cfg, symmetric)
    return out
