"""Phase 2 of the fast solver: Anderson-accelerated Douglas–Rachford with a certificate."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lrgan_dist.core.rpca.certificate import _gap
from lrgan_dist.core.rpca.config import RPCAConfig, RPCAResult, _finish
from lrgan_dist.core.rpca.ialm import _ialm_core
from lrgan_dist.core.rpca.linalg import _full_spectrum, _PartialSVT, _svt, _use_partial

# fast solver: exact (eigvalsh) certificate every _EXACT_EVERY iterations for problems whose
# residual is below tol but whose cheap certificate is not yet below gap_tol
_EXACT_EVERY = 5


def _solve_fast(M_all: Tensor, fro_all: Tensor, out: RPCAResult, idx: Tensor, lam: float,
                tol: float, cfg: RPCAConfig, symmetric: bool) -> None:
    M = M_all[idx]
    fro = fro_all[idx]
    mu_rule = out.mu[idx]
    gam = float(cfg.gamma) / mu_rule
    lam_t = out.lam[idx]
    partial = _use_partial(cfg, symmetric, M.shape[-1])
    # Phase 1 (warm start): inexact ALM gets near the optimum in a nearly fixed number of
    # cheap iterations; the DR phase starts from its primal-dual pair, z₀ = L + γY (the DR
    # fixed point is z* = L* + γY*).  Without it, z₀ = M.
    if cfg.warm_start:
        lo_m, hi_m = cfg.warm_band
        slow = (cfg.warm_slow_rho, lo_m * mu_rule, hi_m * mu_rule)
        st, _ = _ialm_core(M, fro, lam_t, tol, cfg.max_iter, cfg.warm_rho, partial, symmetric, slow)
        z = st.L + gam[:, None, None] * st.Y
        its0 = st.iterations
    else:
        z = M.clone()
        its0 = torch.zeros(M.shape[0], dtype=torch.int64, device=M.device)
    _dr_phase(M, fro, lam_t, gam, z, its0, idx, out, lam, tol, cfg, symmetric, partial)


class _Anderson:
    """Safeguarded type-II Anderson acceleration of the DR map (Walker & Ni 2011; Zhang,
    O'Donoghue & Boyd 2020) for a batch, with memory m.

    Ring buffers hold the last m differences ΔG (of the residual g) and ΔZ + ΔG, stored in
    float32 (they only shape the extrapolation; the iterate stays in the working dtype),
    with a per-problem validity mask, and the Gram matrix ΔGΔGᵀ is updated one row per step
    (m·d² instead of m²·d²).  Step: θ = argmin ‖g − ΔG θ‖ (Tikhonov-regularised),
    z ← z + g − (ΔZ + ΔG)θ.  Safeguard: an extrapolated point whose residual is not below
    the last accepted one's is replaced by the plain DR step from that point and the memory
    of that problem is cleared.
    """

    def __init__(self, z: Tensor, m: int) -> None:
        A, n1, n2 = z.shape
        self.m, n = m, n1 * n2
        dt, dev = z.dtype, z.device
        adt = torch.float32 if dt == torch.float64 else dt
        self.dG = torch.zeros(A, m, n, dtype=adt, device=dev)
        self.dZG = torch.zeros(A, m, n, dtype=adt, device=dev)
        self.H = torch.zeros(A, m, m, dtype=dt, device=dev)
        self.valid = torch.zeros(A, m, dtype=torch.bool, device=dev)
        self.have_last = torch.zeros(A, dtype=torch.bool, device=dev)
        self.gn_prev = torch.full((A,), math.inf, dtype=dt, device=dev)
        # the plain DR step from the last accepted point is z_last + g_last
        self.z_last, self.g_last, self.tmp = (torch.zeros_like(z) for _ in range(3))
        self.eye = torch.eye(m, dtype=dt, device=dev)
        self.col = 0

    def keep(self, mask: Tensor) -> None:
        for name in ("dG", "dZG", "H", "valid", "have_last", "gn_prev", "z_last", "g_last", "tmp"):
            setattr(self, name, getattr(self, name)[mask])

    def step(self, z: Tensor, g: Tensor, gn: Tensor) -> Tensor:
        """The next iterate from z and its residual g (norm gn); z and g are overwritten."""
        A, n1, n2 = z.shape
        n = n1 * n2
        m, col = self.m, self.col
        self.col = (col + 1) % m
        accept = gn <= self.gn_prev
        all_ok = bool(accept.all())
        upd = accept & self.have_last
        # new difference columns; a problem without upd gets an invalid (unused) column
        tmp = self.tmp
        torch.sub(g, self.g_last, out=tmp)
        self.dG[:, col].copy_(tmp.view(A, n))
        tmp.add_(z).sub_(self.z_last)
        self.dZG[:, col].copy_(tmp.view(A, n))
        self.valid[:, col] = upd
        self.valid &= accept[:, None]
        h = (self.dG @ self.dG[:, col, :, None]).squeeze(-1).to(self.H.dtype)  # [A, m]
        self.H[:, col, :] = h
        self.H[:, :, col] = h
        if all_ok:
            self.z_last.copy_(z)
            self.g_last.copy_(g)
            self.gn_prev = gn
            z.add_(g)                                            # plain DR step
        else:
            a3 = accept[:, None, None]
            self.gn_prev = torch.where(accept, gn, torch.full_like(gn, math.inf))
            z_new = torch.where(a3, z + g, self.z_last + self.g_last)
            self.z_last = torch.where(a3, z, self.z_last)
            self.g_last = torch.where(a3, g, self.g_last)
            z = z_new
        self.have_last = accept
        use = accept & self.valid.any(-1)
        if bool(use.any()):
            vm = self.valid.to(self.H.dtype)
            H = self.H * (vm[:, :, None] * vm[:, None, :])
            reg = 1e-10 * H.diagonal(dim1=-2, dim2=-1).sum(-1) + torch.finfo(H.dtype).tiny
            H = H + reg[:, None, None] * self.eye + torch.diag_embed(1.0 - vm)
            rhs = (self.dG @ g.reshape(A, n).to(self.dG.dtype)[:, :, None]).to(H.dtype) * vm[:, :, None]
            theta, info = torch.linalg.solve_ex(H, rhs)
            ok = use & (info == 0) & torch.isfinite(theta).all((-2, -1))
            theta = torch.where(ok[:, None, None], theta, 0) * vm[:, :, None]  # [A, m, 1]
            z.sub_((self.dZG.mT @ theta.to(self.dZG.dtype)).view(A, n1, n2))
        return z


def _dr_step(M: Tensor, z: Tensor, gam: Tensor, lam_t: Tensor, svt: _PartialSVT | None,
             symmetric: bool, V: Tensor, C: Tensor, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One DR evaluation at z (module doc): L = D_γ(z), V = M − 2L + z, C = clip(V, ±γλ)
    (so S = V − C) and the fixed-point residual g = L − z + C, written into the buffers
    V, C, g.  Returns (L, singular values of L, ‖g‖_F)."""
    t3 = (gam * lam_t)[:, None, None]
    L, sv = _svt(z, gam, symmetric)[:2] if svt is None else svt(z, gam)
    torch.add(M, z, out=V)
    V.sub_(L, alpha=2)
    torch.clamp(V, min=-t3, max=t3, out=C)
    torch.sub(L, z, out=g)
    g.add_(C)
    return L, sv, torch.linalg.vector_norm(g, dim=(-2, -1))


def _dr_phase(M: Tensor, fro: Tensor, lam_t: Tensor, gam: Tensor, z: Tensor, its0: Tensor,
              idx: Tensor, out: RPCAResult, lam: float, tol: float, cfg: RPCAConfig,
              symmetric: bool, partial: bool) -> None:
    """Phase 2 of the fast solver: certified Anderson-accelerated Douglas–Rachford (module
    doc) from z, until the primal residual and the certificate both meet their tolerance;
    results are written to ``out`` at ``idx``."""
    A = M.shape[0]
    m = cfg.anderson
    dt, dev = M.dtype, M.device
    out.mu[idx] = 1.0 / gam  # the DR step in use
    svt = _PartialSVT() if partial else None
    acc = _Anderson(z, m) if m else None
    pos = torch.arange(A, device=dev)
    V, C, g = (torch.empty_like(M) for _ in range(3))
    # Best feasible pair (L, M − L) seen at the checks, by its objective (the certificate's
    # upper bound): returned for problems that hit max_iter, instead of the last (possibly
    # extrapolated) iterate, whose objective can be far above the optimum.
    best_obj = torch.full((A,), math.inf, dtype=dt, device=dev)
    best_L = torch.zeros_like(M)
    best_Y = torch.zeros_like(M)
    best_gap = torch.full((A,), math.inf, dtype=dt, device=dev)
    no = torch.zeros(A, dtype=torch.bool, device=dev)
    # exact certificates (one eigvalsh each) back off while they are far from gap_tol
    next_exact = torch.zeros(A, dtype=torch.int64, device=dev)
    for it in range(1, cfg.max_iter + 1):
        g3 = gam[:, None, None]
        L, sv, gn = _dr_step(M, z, gam, lam_t, svt, symmetric, V, C, g)
        res = gn / fro
        # Checks (objective, best pair, certificate) every _EXACT_EVERY steps and at the cap.
        last = it == cfg.max_iter
        if it % _EXACT_EVERY == 0 or last:
            Y = (z - L) / g3
            # cheap bounds assume ‖Y‖₂ ≤ 1, true for a full SVT; a partial one needs strict
            obj = sv.sum(-1) + lam_t * (M - L).abs().sum((-2, -1))
            gap = _gap(M, L, sv, Y, lam_t, upper=obj)
            better = obj < best_obj
            if bool(better.any()):
                b3 = better[:, None, None]
                best_obj = torch.where(better, obj, best_obj)
                best_gap = torch.where(better, gap, best_gap)
                best_L = torch.where(b3, L, best_L)
                best_Y = torch.where(b3, Y, best_Y)
            cand = res <= tol
            certified = (gap <= cfg.gap_tol) & cand if svt is None else no[:A]
            cand = cand & ~certified & ((next_exact <= it) | last)
            if bool(cand.any()):  # the exact spectral norm (one eigvalsh) for the candidates
                exact = _gap(M[cand], L[cand], sv[cand], Y[cand], lam_t[cand], exact=True,
                             strict=svt is not None, symmetric=symmetric)
                gap = gap.clone()
                gap[cand] = exact if svt is not None else torch.minimum(gap[cand], exact)
                certified = certified | (cand & (gap <= cfg.gap_tol))
                # next exact check in 1-8 check intervals, by how far the gap is from gap_tol
                wait = torch.clamp(torch.nan_to_num(gap / cfg.gap_tol, nan=1.0), 1, 8).floor()
                next_exact = torch.where(cand, it + _EXACT_EVERY * wait.to(torch.int64), next_exact)
            conv = certified
            done = conv | last
            if bool(done.any()):
                # converged: the current iterate (S = V − C); stopped by max_iter: the best
                # pair seen, as (L, S = M − L), which is exactly feasible
                d = done
                c3 = conv[:, None, None]
                Lf = torch.where(c3, L, best_L)[d]
                Sf = torch.where(c3, V - C, M - best_L)[d]
                if symmetric:  # the iterates are symmetric up to rounding
                    Lf, Sf = 0.5 * (Lf + Lf.mT), 0.5 * (Sf + Sf.mT)
                Md = M[d]
                resf = torch.linalg.matrix_norm(Md - Lf - Sf) / fro[d]
                svf, vhf = _full_spectrum(Lf, symmetric)
                gapf = torch.where(conv, gap, best_gap)[d]
                if svt is not None and not bool(conv[d].all()):  # the strict certificate
                    nc = ~conv[d]
                    gapf[nc] = _gap(Md[nc], Lf[nc], svf[nc], best_Y[d][nc], lam_t[d][nc], strict=True,
                                    symmetric=symmetric)
                _finish(out, idx[d], Md, Lf, Sf, svf, vhf, its0[pos[d]] + it, resf, conv[d], gapf, lam)
                keep = ~done
                if not bool(keep.any()):
                    return
                if svt is not None:
                    svt.keep(keep)
                if acc is not None:
                    acc.keep(keep)
                pos, idx, M, fro, gam, lam_t, z, V, C, g, gn, next_exact = (
                    t[keep] for t in (pos, idx, M, fro, gam, lam_t, z, V, C, g, gn, next_exact))
                best_obj, best_gap, best_L, best_Y = (t[keep] for t in (best_obj, best_gap, best_L, best_Y))
                A = idx.numel()
        if acc is None:
            z.add_(g)
        else:
            z = acc.step(z, g, gn)
