"""Matrix-free region subspaces: top-k eigenpairs of M_R and M_B from J·v and Jᵀ·u only.

The region Grams of LowRankGAN (Zhu et al., "Low-Rank Subspaces in GANs", NeurIPS 2021,
§3.1; :mod:`lrgan_dist.core.jacobian`) are, for the pooled, channel-reduced Jacobian
``J = ∂pool(G(x))/∂x ∈ R^{P×d}`` (P = c·h·w) and a mask R on the analysis grid::

    M_R = Jᵀ diag(R) J / ΣR          M_B = Jᵀ diag(1 − R) J / Σ(1 − R)

Forming them costs d Jacobian-vector products (one per latent dimension) and 2·d² numbers
per region per sample -- 9 216 JVPs and 2 × 340 MB at d = 18·512 (W+ of a 1024² StyleGAN2).
Here only the **operators** are used::

    v ↦ M_R v = Jᵀ (R ⊙ (J v)) / ΣR        (one JVP for J v, one VJP for Jᵀ u)

``J V`` for a block of tangents is ``torch.func.jvp`` under ``vmap`` (exactly the dense
path's forward mode, through :func:`lrgan_dist.core.jacobian.pool_image` so the operator
is the dense J's), ``Jᵀ U`` is ``torch.func.vjp``'s pull-back under ``vmap`` (the graph
is built once per batch and reused for every block).  Both sides of every region share
the JVPs of one block: the tangents of all 2R problems are pushed in one stream.

Eigensolver: randomized block Krylov (Halko, Martinsson & Tropp, SIAM Rev. 2011, §4.5;
Musco & Musco, "Randomized Block Krylov Methods for Stronger and Faster Approximate
Singular Value Decomposition", NeurIPS 2015) with full re-orthogonalisation,
Rayleigh–Ritz on the whole basis after every block, and residual expansion::

    X₀ = orth(Ω), Ω ~ N(0, 1)^{d×b},  b = k + oversample
    repeat:  Y = M X;  Q ← [Q, X], MQ ← [MQ, Y]
             T = Qᵀ(MQ) = S Θ Sᵀ (Ritz pairs θ_i, u_i = Q s_i, M u_i = (MQ) s_i, no product)
             r_i = M u_i − θ_i u_i,     certificate ρ_i = ‖r_i‖ / θ_1    (i < k)
             stop when max_{i<k} ρ_i ≤ tol, else X = orth((I − QQᵀ)[r_0 … r_{b−1}])

The residuals of the top b Ritz pairs lie in span(Q, MQ), so the basis grows as the
block Krylov space ``span(Ω, MΩ, M²Ω, …)`` does, but towards the wanted pairs; when the
basis would exceed ``max_basis`` columns it is thick-restarted onto the top b Ritz
vectors (their images are kept, no product is repeated).  ρ_i is a rigorous a-posteriori
bound: θ_i is within ‖r_i‖ of an eigenvalue of M, and by Davis–Kahan the sine between
the Ritz space of the top k and M's top-k eigenspace is ≤ ‖[r_0 … r_{k−1}]‖ / gap_k
(gap_k = θ_k − λ_{k+1}); choose k at a gap of the spectrum for a sharp basis.

LowRankGAN on the compressed problem (``union=True``): with ``W = [V_R; V_B]`` (2k rows)
the stage also applies ``M_R`` to ``V_B`` and ``M_B`` to ``V_R`` (the images of V_R
under M_R and of V_B under M_B are already known from the Krylov products) and returns
``W M W ᵀ`` per side ([2k, 2k] in W-coordinates).  :func:`compressed_directions`
orthonormalises span(W) (``Q = Λ^{-1/2} Eᵀ W`` from ``W Wᵀ = E Λ Eᵀ``) and runs the
methods on ``M̃ = Q M Qᵀ`` -- the exact restriction of M to U = span(V_R ∪ V_B) (see
there for what that approximates).

Cost model (per sample, b = k + oversample, m Krylov blocks until the certificate
holds, R regions, F = flops of one generator pass, P = c·h·w, A = activation bytes)
-----------------------------------------------------------------------------------
=====================  =========================================  ==========================
step                   products (generator tangent passes)        bytes held
=====================  =========================================  ==========================
Krylov                 2R·b·m JVPs + 2R·b·m VJPs                  Q, MQ: 2·2R·(max_basis·d)
                       (+1 primal, +1 graph forward per batch)    float64; graph ≈ A
union (LowRankGAN)     2R·k JVPs + 2R·k VJPs                      4R·k² result
result                 --                                         2R·(k·d + 2k) float32
                                                                  (+ 2R·4k² union)
=====================  =========================================  ==========================

Each JVP costs ≈ 1–2 F (primal shared under vmap), each VJP ≈ 2–3 F, both in chunks of
``chunk`` tangents: activation memory ∝ chunk·A, the block images ``J X`` hold
``4·b·P`` bytes -- nothing grows with d beyond the k·d bases (the dense path holds
J: 4·P·d bytes and the Grams 2R·d²·4).  Dense costs d JVPs; matrix-free wins when
4R·b·m(+union) < d, e.g. R = 1, k = 32, b = 40, m = 3 → 480 products + 256 for the
union against d = 9 216 (19×); measured in ``bench/bench_matfree.py``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, cast

import torch
from torch import Tensor

from lrgan_dist.core.jacobian import CHANNEL_MODES, pool_image
from lrgan_dist.core.shapes import assert_shape
from lrgan_dist.core.subspaces import INERT_FRAC

__all__ = [
    "MatFreeConfig",
    "MatFreeResult",
    "RegionOperator",
    "block_krylov",
    "region_subspaces",
    "compressed_directions",
    "projected_svd_directions",
    "COMPRESSED_METHODS",
    "dense_topk",
]

#: direction methods that run on the compressed problem
COMPRESSED_METHODS = ("jacobian_svd", "projected_svd", "lowrankgan")


@dataclass(frozen=True)
class MatFreeConfig:
    """Settings of the matrix-free eigensolver (saved with every result).

    k           eigenpairs per (region, side)
    oversample  extra block columns (b = k + oversample)
    max_blocks  most operator block applications (the first included)
    tol         certificate: stop when max_{i<k} ‖M u_i − θ_i u_i‖ / θ_1 ≤ tol
    max_basis   thick-restart threshold on the basis width (default 4·b)
    chunk       tangents per vmap pass (memory ∝ chunk)
    union       also compute W M Wᵀ for compressed LowRankGAN
    seed        start block Ω (deterministic per sample, independent of the batch)
    """

    k: int = 32
    oversample: int = 8
    max_blocks: int = 12
    tol: float = 1e-4
    max_basis: int | None = None
    chunk: int = 16
    union: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for f in ("k", "max_blocks", "chunk"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"matfree.{f}: expected a positive integer, received {v!r}")
        if isinstance(self.oversample, bool) or not isinstance(self.oversample, int) or self.oversample < 0:
            raise ValueError(f"matfree.oversample: expected an integer >= 0, received {self.oversample!r}")
        if isinstance(self.tol, bool) or not isinstance(self.tol, (int, float)) or not self.tol > 0:
            raise ValueError(f"matfree.tol: expected a positive number, received {self.tol!r}")
        if self.max_basis is not None and (not isinstance(self.max_basis, int) or self.max_basis < 2 * self.block):
            raise ValueError(f"matfree.max_basis: expected an integer >= 2·(k + oversample) = {2 * self.block}, "
                             f"received {self.max_basis!r}")

    @property
    def block(self) -> int:
        return self.k + self.oversample

    @property
    def basis_limit(self) -> int:
        return self.max_basis if self.max_basis is not None else 4 * self.block


@dataclass
class MatFreeResult:
    """Per sample and region (float32 unless noted; n samples, R regions, k pairs).

    basis_in / basis_out  [n, R, k, d]   orthonormal Ritz vectors (rows), θ descending
    eig_in / eig_out      [n, R, k]      Ritz values θ of M_R / M_B
    residual_in / _out    [n, R, k]      ‖M u_i − θ_i u_i‖ / θ_1 (the certificate)
    union_in / union_out  [n, R, 2k, 2k] W M Wᵀ with W = [basis_in; basis_out] (union=True)
    certified             [n] bool       every (region, side) met tol
    finite                [n] bool       no NaN/Inf anywhere (empty mask/rest → False)
    images                [n, C, H, W]   the primal output
    counts                products per sample: jvp, vjp, blocks, forwards
    """

    basis_in: Tensor
    eig_in: Tensor
    residual_in: Tensor
    basis_out: Tensor
    eig_out: Tensor
    residual_out: Tensor
    certified: Tensor
    finite: Tensor
    images: Tensor
    union_in: Tensor | None = None
    union_out: Tensor | None = None
    counts: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------- operator


class RegionOperator:
    """``J`` and ``Jᵀ`` of ``pool(G(x))`` for a batch of n samples, products counted.

    ``fn`` maps x [n, d] -> images [n, C, H, W] sample-wise; the pooled output is
    ``pool_image(fn(x), grid, channels)`` [n, c, h, w], the dense path's exactly.
    """

    def __init__(self, fn: Callable[[Tensor], Tensor], x: Tensor, grid: tuple[int, int],
                 channels: str = "mean", chunk: int = 16, vectorize: bool = True) -> None:
        if channels not in CHANNEL_MODES:
            raise ValueError(f"channels: expected one of {list(CHANNEL_MODES)}, received {channels!r}")
        assert_shape(x, (None, None), "x")
        self.x = x.detach()
        self.n, self.d = x.shape
        self.grid, self.channels, self.chunk, self.vectorize = tuple(grid), channels, int(chunk), vectorize

        def pooled(z: Tensor) -> Tensor:
            return pool_image(fn(z), self.grid, self.channels)  # type: ignore[arg-type]

        self.fn, self.pooled = fn, pooled
        self.counts = {"jvp": 0, "vjp": 0, "forwards": 0}
        self._vjp_fn: Callable[..., Any] | None = None
        self.images: Tensor | None = None

    # J V --------------------------------------------------------------------
    def jvp(self, V: Tensor) -> Tensor:
        """V [n, b, d] -> J V [n, b, c, h, w] (in x's dtype)."""
        assert_shape(V, (self.n, None, self.d), "V")
        from torch.func import jvp, vmap

        b = V.shape[1]
        T = V.to(self.x.dtype).transpose(0, 1).contiguous()  # [b, n, d]
        outs = []
        for t0 in range(0, b, self.chunk):
            t = T[t0:t0 + self.chunk]
            with torch.no_grad():
                if self.vectorize:
                    try:
                        # jvp without has_aux returns a pair; torch types out_dims without None entries
                        y, dy = cast(tuple[Tensor, Tensor],
                                     vmap(lambda u: jvp(self.fn, (self.x,), (u,)),
                                          out_dims=(None, 0), randomness="same")(t))  # type: ignore[arg-type]
                    except Exception as exc:  # noqa: BLE001 - any vmap failure -> loop
                        warnings.warn(f"matfree: vmap over jvp failed ({type(exc).__name__}: {str(exc)[:200]}); "
                                      "looping over tangents", RuntimeWarning, stacklevel=2)
                        self.vectorize = False
                if not self.vectorize:
                    y, dy = self._jvp_loop(t)
            if self.images is None:
                self.images = y.detach()
            self.counts["forwards"] += 1
            kk = dy.shape[0]
            p = pool_image(dy.reshape(kk * self.n, *dy.shape[2:]), self.grid, self.channels)  # type: ignore[arg-type]
            outs.append(p.reshape(kk, self.n, *p.shape[1:]))
        self.counts["jvp"] += b
        return torch.cat(outs).transpose(0, 1)

    def _jvp_loop(self, t: Tensor) -> tuple[Tensor, Tensor]:
        import torch.autograd.forward_ad as fwAD

        y, outs = None, []
        for u in t:
            with fwAD.dual_level():
                out = self.fn(fwAD.make_dual(self.x, u.contiguous()))
                primal, tangent = fwAD.unpack_dual(out)
                y = primal.detach().clone()
                outs.append(torch.zeros_like(primal) if tangent is None else tangent.detach().clone())
        assert y is not None
        return y, torch.stack(outs)

    # Jᵀ U -------------------------------------------------------------------
    def vjp(self, U: Tensor) -> Tensor:
        """U [n, b, c, h, w] -> Jᵀ U [n, b, d]."""
        from torch.func import vjp, vmap

        assert_shape(U, (self.n, None, None, *self.grid), "U")
        if self._vjp_fn is None:  # one graph per batch, reused by every block
            with torch.enable_grad():
                _, self._vjp_fn = cast(tuple[Tensor, Callable[..., Any]], vjp(self.pooled, self.x))  # no has_aux: a pair
            self.counts["forwards"] += 1
        b = U.shape[1]
        Ut = U.to(self.x.dtype).transpose(0, 1).contiguous()  # [b, n, c, h, w]
        outs = []
        for t0 in range(0, b, self.chunk):
            u = Ut[t0:t0 + self.chunk]
            try:
                (g,) = vmap(self._vjp_fn)(u)
            except Exception:  # noqa: BLE001 - vmap over the pull-back failed: loop
                g = torch.stack([self._vjp_fn(ui)[0] for ui in u])
            outs.append(g.detach())
        self.counts["vjp"] += b
        return torch.cat(outs).transpose(0, 1)

    def release(self) -> None:
        self._vjp_fn = None


def _weights(masks: Tensor, n: int, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """[2R, n, h, w] weights (R then 1 − R, divided by their area) and areas [2R, n]."""
    h, w = grid
    m = torch.as_tensor(masks)
    if m.ndim == 3 and tuple(m.shape[1:]) == (h, w):
        m = m[:, None].expand(-1, n, h, w)
    elif not (m.ndim == 4 and tuple(m.shape[1:]) == (n, h, w)):
        raise ValueError(f"masks: expected [R, {h}, {w}] or [R, {n}, {h}, {w}], received {list(m.shape)}")
    if m.shape[0] < 1 or not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise ValueError("masks: expected R >= 1 masks with finite values in [0, 1]")
    wts = torch.cat([m, 1.0 - m]).to(torch.float64)
    area = wts.sum((-2, -1))
    denom = torch.where(area > 0, area, torch.full_like(area, float("nan")))
    return wts / denom[..., None, None], area


# ----------------------------------------------------------------------------- Krylov


def _orth_against(X: Tensor, Q: Tensor | None, gen: torch.Generator) -> Tensor:
    """Orthonormal columns spanning X's part outside span(Q): X [P, d, b], Q [P, d, m]."""
    scale = X.norm(dim=1).amax(-1, keepdim=True).clamp_min(1e-300)  # [P, 1]
    for _ in range(2):
        if Q is not None and Q.shape[-1]:
            X = X - Q @ (Q.mT @ X)
        nrm = X.norm(dim=1)  # [P, b]
        weak = nrm <= 1e-10 * scale  # directions already in span(Q): refill at random
        if bool(weak.any()):
            rnd = torch.randn(X.shape, generator=gen, dtype=X.dtype).to(X.device)
            X = torch.where(weak[:, None, :], rnd * scale[:, None, :], X)
            if Q is not None and Q.shape[-1]:
                X = X - Q @ (Q.mT @ X)
        X, _ = torch.linalg.qr(X)
        scale = torch.ones_like(scale)
    return X


def block_krylov(apply: Callable[[Tensor, Tensor], Tensor], X0: Tensor, k: int, tol: float = 1e-4,
                 max_blocks: int = 12, max_basis: int | None = None,
                 gen: torch.Generator | None = None) -> dict[str, Tensor]:
    """Top-k eigenpairs of P symmetric PSD operators by randomized block Krylov.

    ``apply(X, active)`` maps X [P', d, b] (the problems selected by the bool mask
    ``active`` [P]) to M X [P', d, b]; X0 [P, d, b] is the start block (b ≥ k).  Works in
    float64.  Returns ``V`` [P, k, d] (rows, θ descending), ``theta`` [P, k], ``residual``
    [P, k] (‖M v − θ v‖/θ_1), ``blocks`` [P] (operator applications used),
    ``certified`` [P], and, for the union step, ``MV`` [P, k, d] = M applied to V's rows.
    Problems leave the active set once certified.
    """
    assert_shape(X0, (None, None, None), "X0")
    P, d, b = X0.shape
    if not 1 <= k <= b <= d:
        raise ValueError(f"block_krylov: expected 1 <= k <= b <= d, received k={k}, b={b}, d={d}")
    gen = gen or torch.Generator().manual_seed(0)
    limit = max(2 * b, max_basis or 4 * b)
    dt, dev = torch.float64, X0.device
    X = _orth_against(X0.to(dt), None, gen)
    Q = torch.zeros(P, d, 0, dtype=dt, device=dev)
    MQ = torch.zeros(P, d, 0, dtype=dt, device=dev)
    V = torch.zeros(P, k, d, dtype=dt, device=dev)
    MV = torch.zeros_like(V)
    theta = torch.zeros(P, k, dtype=dt, device=dev)
    resid = torch.full((P, k), float("inf"), dtype=dt, device=dev)
    blocks = torch.zeros(P, dtype=torch.int64, device=dev)
    active = torch.ones(P, dtype=torch.bool, device=dev)
    # Per-problem bases live in lists (they stop growing when certified).
    Qs = [Q[i] for i in range(P)]
    MQs = [MQ[i] for i in range(P)]
    Xs = [X[i] for i in range(P)]
    for _ in range(max_blocks):
        idx = torch.nonzero(active).flatten().tolist()
        if not idx:
            break
        Xa = torch.stack([Xs[i] for i in idx])  # [P', d, b]
        Ya = apply(Xa.to(dt), active).to(dt)
        assert_shape(Ya, tuple(Xa.shape), "M X")
        for j, i in enumerate(idx):
            blocks[i] += 1
            Qi = torch.cat([Qs[i], Xa[j]], dim=1)
            MQi = torch.cat([MQs[i], Ya[j]], dim=1)
            T = Qi.mT @ MQi
            w, S = torch.linalg.eigh(0.5 * (T + T.mT))
            w, S = w.flip(-1), S.flip(-1)
            U, MU = Qi @ S, MQi @ S  # Ritz vectors and their images (no product)
            Rres = MU - U * w[None, :]
            top = w[0].clamp_min(1e-300) if w[0] > 0 else torch.tensor(1e-300, dtype=dt)
            rho = Rres[:, :k].norm(dim=0) / top
            theta[i], V[i], MV[i], resid[i] = w[:k], U[:, :k].mT, MU[:, :k].mT, rho
            if bool((rho <= tol).all()) or not bool(torch.isfinite(rho).all()):
                active[i] = False
                continue
            if Qi.shape[1] + b > limit or Qi.shape[1] + b > d:  # thick restart on the top b Ritz pairs
                keep = min(b, d - b)
                Qi, MQi = U[:, :keep], MU[:, :keep]
            Qs[i], MQs[i] = Qi, MQi
            Xs[i] = _orth_against(Rres[:, :b][None], Qi[None], gen)[0]
    return {"V": V, "theta": theta, "residual": resid, "blocks": blocks,
            "certified": (resid <= tol).all(-1), "MV": MV}


# ----------------------------------------------------------------------------- per batch


def _start_block(n: int, d: int, b: int, seed: int, sample_ids: Any | None) -> Tensor:
    """Ω [n, d, b] with sample i's block from (seed, sample_ids[i]) alone."""
    ids = list(range(n)) if sample_ids is None else [int(s) for s in sample_ids]
    out = []
    for s in ids:
        g = torch.Generator().manual_seed((int(seed) * 1_000_003 + s) % (2**63 - 1))
        out.append(torch.randn(d, b, generator=g, dtype=torch.float64))
    return torch.stack(out) if out else torch.zeros(0, d, b, dtype=torch.float64)


def region_subspaces(generator: Any, x: Tensor, masks: Tensor, grid: tuple[int, int], channels: str = "mean",
                     cfg: MatFreeConfig = MatFreeConfig(), anchor: Tensor | None = None,
                     sample_ids: Any | None = None, fn: Callable[[Tensor], Tensor] | None = None) -> MatFreeResult:
    """Top-k eigenpairs of every region's M_R and M_B for a batch, matrix-free.

    ``generator`` follows the protocol (``forward(x, anchor)``; anchor = x when None, held
    fixed); x [n, d]; masks [R, h, w] or [R, n, h, w] on the analysis grid.  ``sample_ids``
    seeds each sample's start block (default 0 … n−1), so results do not depend on the
    batch.  See the module docstring for the algorithm, the certificate and the cost.
    """
    assert_shape(x, (None, None), "x")
    n, d = x.shape
    anchor_t = (x if anchor is None else torch.as_tensor(anchor)).detach().clone()
    assert_shape(anchor_t, (n, d), "anchor")
    if fn is None:
        def fn(z: Tensor) -> Tensor:
            return generator.forward(z, anchor_t)
    b = min(cfg.block, d)
    k = min(cfg.k, b)
    grid_t = cast(tuple[int, int], tuple(grid))  # grid may arrive as a list
    wts, area = _weights(masks, n, grid_t)  # [2R, n, h, w]
    twoR = wts.shape[0]
    R = twoR // 2
    op = RegionOperator(fn, x, grid_t, channels, cfg.chunk)
    wts = wts.nan_to_num(0.0).to(x.device)  # an empty side iterates on 0 and is set to NaN below
    # problem p = side·R·n + r·n + i  (sides: 0 = in, 1 = out)
    Omega = _start_block(n, d, b, cfg.seed, sample_ids).to(x.device)
    X0 = Omega[None].expand(twoR, n, d, b).reshape(twoR * n, d, b)

    def apply(X: Tensor, active: Tensor) -> Tensor:
        # group active problems by sample: one JVP stream per sample of all its blocks
        act = active.reshape(twoR, n)
        per_sample = act.sum(0)  # [n]
        width = int(per_sample.max()) * b
        Vb = torch.zeros(n, width, d, dtype=x.dtype, device=x.device)
        where: list[tuple[int, int, int]] = []  # (problem row in X, sample, column offset)
        fill = [0] * n
        row = 0
        for p, i in zip(*torch.nonzero(act, as_tuple=True)):
            p, i = int(p), int(i)
            Vb[i, fill[i]:fill[i] + b] = X[row].mT.to(x.dtype)
            where.append((row, i, fill[i]))
            fill[i] += b
            row += 1
        sel = torch.nonzero(act, as_tuple=True)
        JV = op.jvp(Vb).to(torch.float64)  # [n, width, c, h, w]
        Ucot = torch.zeros_like(JV)
        for (row, i, off), p in zip(where, sel[0].tolist()):
            Ucot[i, off:off + b] = JV[i, off:off + b] * wts[p, i][None, None]
        MX = op.vjp(Ucot).to(torch.float64)  # [n, width, d]
        return torch.stack([MX[i, off:off + b].mT for row, i, off in where])

    gen = torch.Generator().manual_seed(int(cfg.seed) + 1)
    kr = block_krylov(apply, X0, k, cfg.tol, cfg.max_blocks, cfg.basis_limit, gen)
    V = kr["V"].reshape(2, R, n, k, d)
    th = kr["theta"].reshape(2, R, n, k)
    rs = kr["residual"].reshape(2, R, n, k)
    MV = kr["MV"].reshape(2, R, n, k, d)
    empty = ~(area > 0).reshape(2, R, n)
    nan = float("nan")
    V = torch.where(empty[..., None, None], nan, V)
    th = torch.where(empty[..., None], nan, th)
    rs = torch.where(empty[..., None], nan, rs)
    union_in = union_out = None
    if cfg.union:
        # W = [V_in; V_out] per (region, sample).  M_in V_in and M_out V_out are known
        # (Krylov images MV); one more stream gives M_in V_out and M_out V_in.
        cross = torch.stack([V[1], V[0]]).nan_to_num()  # [2, R, n, k, d]: V_out (for M_in), V_in (for M_out)
        stream = cross.permute(2, 0, 1, 3, 4).reshape(n, 2 * R * k, d)
        JV = op.jvp(stream.to(x.dtype)).to(torch.float64)  # [n, 2Rk, c, h, w]
        c = JV.shape[2]
        JV = JV.reshape(n, 2, R, k, c, *op.grid)
        wv = wts.reshape(2, R, n, *op.grid).permute(2, 0, 1, 3, 4)[:, :, :, None, None]  # [n, 2, R, 1, 1, h, w]
        Mc = op.vjp((JV * wv).reshape(n, 2 * R * k, c, *op.grid)).to(torch.float64)
        Mc = Mc.reshape(n, 2, R, k, d).permute(1, 2, 0, 3, 4)  # [2, R, n, k, d]: M_in V_out, M_out V_in
        W = torch.cat([V[0], V[1]], dim=-2).nan_to_num()  # [R, n, 2k, d]
        MW_in = torch.cat([MV[0], Mc[0]], dim=-2)  # M_in applied to W's rows
        MW_out = torch.cat([Mc[1], MV[1]], dim=-2)
        ui, uo = W @ MW_in.mT, W @ MW_out.mT  # [R, n, 2k, 2k]
        ui, uo = 0.5 * (ui + ui.mT), 0.5 * (uo + uo.mT)
        ui = torch.where(empty[0][..., None, None], float("nan"), ui)
        uo = torch.where(empty[1][..., None, None], float("nan"), uo)
        union_in = ui.transpose(0, 1).to(torch.float32).cpu()
        union_out = uo.transpose(0, 1).to(torch.float32).cpu()
    images = op.images if op.images is not None else fn(x).detach()
    op.release()
    finite = torch.isfinite(images.reshape(n, -1)).all(1)
    for t in (V, th, rs):
        finite &= torch.isfinite(t.permute(2, 0, 1, *range(3, t.ndim)).reshape(n, -1)).all(1)
    certified = (rs <= cfg.tol).all(-1).all(0).all(0) & finite
    f32 = torch.float32
    return MatFreeResult(
        basis_in=V[0].transpose(0, 1).to(f32).cpu(), eig_in=th[0].transpose(0, 1).to(f32).cpu(),
        residual_in=rs[0].transpose(0, 1).to(f32).cpu(),
        basis_out=V[1].transpose(0, 1).to(f32).cpu(), eig_out=th[1].transpose(0, 1).to(f32).cpu(),
        residual_out=rs[1].transpose(0, 1).to(f32).cpu(),
        certified=certified.cpu(), finite=finite.cpu(), images=images.to(f32).cpu(),
        union_in=union_in, union_out=union_out,
        counts={"jvp": op.counts["jvp"], "vjp": op.counts["vjp"], "forwards": op.counts["forwards"],
                "blocks": int(kr["blocks"].max()) if kr["blocks"].numel() else 0})


# ----------------------------------------------------------------------------- dense reference


def dense_topk(M: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k eigenpairs of symmetric M [B, d, d]: (V [B, k, d] rows, θ [B, k]) descending, float64."""
    assert_shape(M, (None, None, None), "M")
    w, E = torch.linalg.eigh(0.5 * (M + M.mT).to(torch.float64))
    return E.flip(-1)[..., :k].mT, w.flip(-1)[..., :k]


# ----------------------------------------------------------------------------- methods


def _sign_fix(V: Tensor) -> Tensor:
    i = V.abs().argmax(-1, keepdim=True)
    s = torch.sign(torch.gather(V, -1, i))
    return V * torch.where(s == 0, 1.0, s).to(V.dtype)


def _pack(V: Tensor, valid: Tensor, spectrum: Tensor, diagnostics: dict[str, Tensor] | None = None) -> Any:
    from lrgan_dist.core.methods.registry import DirectionResult

    B, kk, d = V.shape
    rowmask = (torch.arange(kk, device=V.device)[None, :] < valid[:, None])[..., None]
    V = torch.where(rowmask, _sign_fix(torch.nan_to_num(V)), float("nan"))
    spec = torch.where(rowmask[..., 0], spectrum, float("nan"))
    return DirectionResult(vectors=V.to(torch.float32), rank=valid.to(torch.int32),
                           spectrum=spec.to(torch.float32), diagnostics=dict(diagnostics or {}))


def _energy_rank(w: Tensor, energy: float) -> Tensor:
    """Smallest r with ``Σ_{i<r} w_i ≥ energy · Σ w_i`` (w [B, k] descending, clamped at 0) → [B] in [1, k]."""
    w = w.clamp(min=0)
    below = torch.cumsum(w, -1) < energy * w.sum(-1, keepdim=True) * (1 - 1e-12)
    return (below.sum(-1) + 1).clamp(max=w.shape[-1])


def projected_svd_directions(V_R: Tensor, th_R: Tensor, V_B: Tensor, th_B: Tensor, energy_in: float = 0.95,
                             energy_out: float = 0.95, union_in: Tensor | None = None) -> Any:
    """``projected_svd`` (LOCO-Edit's rule: Chen et al., "Exploring Low-Dimensional Subspaces
    in Diffusion Models for Controllable Image Editing", NeurIPS 2024) on top-k eigenpairs.

    The dense method's steps (:mod:`lrgan_dist.core.methods.projected_svd`) with the traces
    replaced by the energy of the k pairs given: ``k_R`` = smallest r with
    ``Σ_{i<r} θ_R,i ≥ energy_in · Σ_{i<k} θ_R,i`` (likewise k_B); rows
    ``D = normalize(V_R[:k_R] (I − Wᵀ W))``, ``W = V_B[:k_B]``; rows shorter than 1e-6 before
    normalising are dropped, and so are inert rows (``vᵀM_R v < INERT_FRAC · Σθ_R / d``);
    rows ordered by ``vᵀ M_R v``.  That energy is exact when
    ``union_in`` = W' M_R W'ᵀ (W' = [V_R; V_B]) is given (every row lies in span W'),
    else from the rank-k truncation ``Σ_j θ_R,j (v·v_j)²``.  Identical to the dense method
    when the k pairs capture both Grams' ranges (k ≥ rank).  V_* [B, k, d] rows,
    θ_* [B, k] → DirectionResult with [B, k, d] vectors; diagnostics k_in, k_out.
    """
    assert_shape(V_R, (None, None, None), "V_R")
    B, k, d = V_R.shape
    assert_shape(th_R, (B, k), "theta_R")
    assert_shape(V_B, (B, k, d), "V_B")
    assert_shape(th_B, (B, k), "theta_B")
    f = torch.float64
    VR, VB = V_R.to(f), V_B.to(f)
    finite = torch.isfinite(VR).all((-2, -1)) & torch.isfinite(VB).all((-2, -1)) & torch.isfinite(th_R).all(-1) \
        & torch.isfinite(th_B).all(-1)
    if union_in is not None:
        assert_shape(union_in, (B, 2 * k, 2 * k), "union_in")
        finite &= torch.isfinite(union_in).all((-2, -1))
    VR, VB = VR.nan_to_num(), VB.nan_to_num()
    tR, tB = th_R.to(f).nan_to_num().clamp_min(0), th_B.to(f).nan_to_num().clamp_min(0)
    k_in, k_out = _energy_rank(tR, energy_in), _energy_rank(tB, energy_out)
    ar = torch.arange(k)
    Wm = (ar[None, :] < k_out[:, None]).to(f)[..., None]
    W = VB * Wm  # top-k_B rows of V_B, zero beyond
    C = VR @ W.mT  # [B, k, k]
    D = VR - C @ W
    norms = D.norm(dim=-1)
    keep = (ar[None, :] < k_in[:, None]) & (norms > 1e-6) & finite[:, None]
    D = D / norms.clamp_min(torch.finfo(f).tiny)[..., None]
    if union_in is not None:  # coefficients of each row in W' = [V_R; V_B]
        coef = torch.cat([torch.eye(k, dtype=f).expand(B, k, k), -C], dim=-1) / norms.clamp_min(1e-300)[..., None]
        G = union_in.to(f).nan_to_num()
        energy = torch.einsum("bki,bij,bkj->bk", coef, G, coef)
    else:
        energy = ((D @ VR.mT) ** 2 * tR[:, None, :]).sum(-1)
    # inert rows dropped like the dense method: vᵀM_R v < INERT_FRAC · tr M_R / d, with
    # tr M_R = Σ θ_R over the k pairs (exact when they capture M_R's range)
    keep = keep & (energy >= INERT_FRAC * tR.sum(-1, keepdim=True) / d)
    energy = torch.where(keep, energy, float("-inf"))
    order = torch.argsort(energy, dim=-1, descending=True)
    D = torch.gather(D, 1, order[..., None].expand(B, k, d))
    energy = torch.gather(energy, 1, order)
    valid = keep.sum(-1)
    diag = {"k_in": torch.where(finite, k_in, -1).to(torch.int32),
            "k_out": torch.where(finite, k_out, -1).to(torch.int32)}
    return _pack(D, valid, energy, diag)


def _union_coordinates(W: Tensor, G: Tensor, tol: float = 1e-6) -> tuple[Tensor, Tensor, Tensor]:
    """Orthonormal coordinates of span(W): W [2k, d] rows, G = W M Wᵀ [2k, 2k].

    Returns (Q [k', d] orthonormal rows, M̃ = Q M Qᵀ [k', k'], k' as a 0-d tensor)."""
    lam, E = torch.linalg.eigh(W @ W.mT)
    lam, E = lam.flip(-1), E.flip(-1)
    kp = int((lam > tol * lam[0].clamp_min(1e-300)).sum())
    C = E[:, :kp] / lam[:kp].sqrt()[None, :]  # [2k, k']: Cᵀ W is orthonormal
    # A fixed pseudo-random rotation of the coordinates: in an eigen-adapted basis M̃ is
    # nearly diagonal -- "sparse" -- and PCP would move it into S (see compressed_directions).
    g = torch.Generator().manual_seed(17 + kp)
    H, Rr = torch.linalg.qr(torch.randn(kp, kp, generator=g, dtype=W.dtype))
    H = H * torch.sign(torch.diagonal(Rr))[None, :]
    C = C @ H.to(W.device)
    return C.mT @ W, C.mT @ G @ C, torch.tensor(kp)


def compressed_directions(method: str, params: Mapping[str, Any], basis_in: Tensor, eig_in: Tensor,
                          basis_out: Tensor, eig_out: Tensor, union_in: Tensor | None = None,
                          union_out: Tensor | None = None, precision: torch.dtype | None = None) -> Any:
    """Direction methods on the compressed problem of B samples (one region).

    basis_* [B, k, d] rows, eig_* [B, k], union_* [B, 2k, 2k] = W M Wᵀ with
    W = [basis_in; basis_out].  Returns a DirectionResult with vectors [B, k_dir, d]
    (k_dir = k, or 2k for lowrankgan), NaN-padded beyond ``rank``.

    * ``jacobian_svd``: the Ritz pairs of M_R as they are (rank by ``rank_tol`` as the dense
      method, relative to θ_1) -- the dense method's top-k exactly, up to the certificate.
    * ``projected_svd``: :func:`projected_svd_directions` (the dense method's parameters
      ``energy_in``, ``energy_out``; energies of the k pairs instead of traces).
    * ``lowrankgan``: RPCA + null-space projection (every parameter of the dense method) of
      ``M̃_R, M̃_B = Q M Qᵀ`` where Q is an orthonormal basis of U = span(V_R ∪ V_B); the
      k'-row results are lifted back with Q.  **What this approximates.** M̃ is the exact
      restriction (compression) of M to U, so (a) the principal directions and the null
      space of L_B are sought inside U only -- exact for directions when M's range lies in U
      (k ≥ rank of both Grams, as for the synthetic generator), otherwise the energy of M
      outside U (≤ θ_{k+1} per unit vector, bounded by the certificate's spectrum) is
      invisible; (b) PCP's ℓ1 term is **not rotation invariant**: the sparse part is
      sought in U's coordinates, not the latent axes, so L̃ ≠ Q L Qᵀ in general.  The two
      agree when the PCP optimum has S = 0 in both (M recovered as L: λ above the
      exact-recovery threshold); λ defaults to 1/√k' here (the solver's default for a k'×k'
      matrix), not 1/√d.  The error against the dense path is measured in
      ``bench/bench_matfree.py`` and ``tests/core/test_matfree.py``.
    """
    from lrgan_dist.core.lowrankgan import numerical_rank
    from lrgan_dist.core.methods import get_method

    if method not in COMPRESSED_METHODS:
        raise ValueError(f"method {method!r} needs dense Grams; on a matrix-free store expected one of "
                         f"{list(COMPRESSED_METHODS)}")
    assert_shape(basis_in, (None, None, None), "basis_in")
    B, k, d = basis_in.shape
    assert_shape(eig_in, (B, k), "eig_in")
    assert_shape(basis_out, (B, k, d), "basis_out")
    assert_shape(eig_out, (B, k), "eig_out")
    f = torch.float64
    m = get_method(method, **dict(params))  # validates the parameters
    p: Any = m.params  # the Params class of `method`, which is only known at run time
    if method == "jacobian_svd":
        th = eig_in.to(f)
        finite = torch.isfinite(th).all(-1) & torch.isfinite(basis_in).all((-2, -1))
        valid = torch.where(finite, numerical_rank(th.nan_to_num().clamp_min(0), p.rank_tol, d), 0)
        return _pack(basis_in.to(f), valid, th)
    if method == "projected_svd":
        return projected_svd_directions(basis_in, eig_in, basis_out, eig_out, energy_in=p.energy_in,
                                        energy_out=p.energy_out, union_in=union_in)
    # lowrankgan on the union
    if union_in is None or union_out is None:
        raise ValueError("lowrankgan on a matrix-free store needs union_in/union_out (compute.matfree union)")
    assert_shape(union_in, (B, 2 * k, 2 * k), "union_in")
    assert_shape(union_out, (B, 2 * k, 2 * k), "union_out")
    prec = precision or union_in.dtype
    W = torch.cat([basis_in, basis_out], dim=1).to(f)
    ok = torch.isfinite(W).all((-2, -1)) & torch.isfinite(union_in).all((-2, -1)) \
        & torch.isfinite(union_out).all((-2, -1))
    coords: list[tuple[Tensor, Tensor, Tensor, int] | None] = []
    for i in range(B):
        if not bool(ok[i]):
            coords.append(None)
            continue
        Q, Mi, kp_i = _union_coordinates(W[i], union_in[i].to(f))
        _, Mo, _ = _union_coordinates(W[i], union_out[i].to(f))
        coords.append((Q, Mi, Mo, int(kp_i)))
    K = 2 * k
    vectors = torch.full((B, K, d), float("nan"), dtype=f)
    spectrum = torch.full((B, K), float("nan"), dtype=f)
    rank = torch.zeros(B, dtype=torch.int64)
    schema = m.diagnostics_schema(d)
    diag: dict[str, Tensor] = {}
    for kp in sorted({c[3] for c in coords if c is not None}):
        idx = [i for i, c in enumerate(coords) if c is not None and c[3] == kp]
        Mi = torch.stack([coords[i][1] for i in idx]).to(prec)  # type: ignore[index]
        Mo = torch.stack([coords[i][2] for i in idx]).to(prec)  # type: ignore[index]
        res = m(Mi, Mo)
        Qs = torch.stack([coords[i][0] for i in idx])  # type: ignore[index]
        lifted = res.vectors.to(f).nan_to_num() @ Qs  # [b, k', d]
        t = torch.tensor(idx)
        vectors[t, :kp] = lifted
        spectrum[t, :kp] = res.spectrum.to(f)
        rank[t] = res.rank.to(torch.int64)
        for key, val in res.diagnostics.items():
            if key not in schema:
                continue
            dtype, tail = schema[key]
            if key not in diag:
                fill = float("nan") if dtype.startswith("f") else (-1 if dtype.startswith("i") else 0)
                diag[key] = torch.full((B, *tail), fill, dtype=val.dtype)
            if val.ndim == 1:
                diag[key][t] = val
            else:
                diag[key][t, : val.shape[1]] = val
    return _pack(vectors, rank, spectrum, diag)
