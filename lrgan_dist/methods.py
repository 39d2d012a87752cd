"""Registry of direction methods computed from region Grams (DESIGN.md §1, "Other methods").

Every method maps a batch of Grams ``gram_in = M_R`` and ``gram_out = M_B`` ([B, d, d],
symmetric PSD) to a :class:`DirectionResult`: ``vectors`` [B, d, d] float32 unit rows, best
first, NaN-padded beyond ``rank`` valid rows; ``spectrum`` [B, d] float32, the method's own
spectrum (descending, NaN-padded); ``diagnostics``.  Row signs are fixed (the largest-
magnitude entry of every row is positive) so results are deterministic.

Methods (each class docstring gives its equation and reference):

* ``lowrankgan``   — Zhu et al., "Low-Rank Subspaces in GANs", NeurIPS 2021.
* ``resefa``       — Zhu et al., "Region-Based Semantic Factorization in GANs", ICML 2022.
* ``jacobian_svd`` — top eigenvectors of M_R (ablation: no null-space projection).
* ``ganspace``     — Härkönen et al., "GANSpace", NeurIPS 2020 (population only).

``get_method(name, **params)`` builds one from the registry; an unknown name or parameter
raises ``ValueError`` listing the valid ones.  ``Method.param_hash()`` is a stable 12-hex
fingerprint of the name and parameters (sha256 of their sorted JSON).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal

import torch
from torch import Tensor

from lrgan_dist.generators.base import assert_shape
from lrgan_dist.lowrank import (
    DROP_TOL,
    RPCAConfig,
    _sign_fix,
    lowrankgan_directions,
    numerical_rank,
    resolve_drop_tol,
)

__all__ = [
    "DirectionResult",
    "Method",
    "register_method",
    "get_method",
    "available_methods",
    "LowRankGAN",
    "ReSeFa",
    "JacobianSVD",
    "GANSpace",
]


@dataclass
class DirectionResult:
    """Directions for B problems in a latent space of size d (k = d rows).

    vectors      [B, k, d] float32  unit rows, best first, NaN rows beyond ``rank``
    rank         [B] int32          number of valid (leading, non-NaN) rows
    spectrum     [B, d] float32     the method's own spectrum, descending, NaN-padded
    diagnostics  dict[str, Tensor]  per-problem extras (leading dimension B)
    """

    vectors: Tensor
    rank: Tensor
    spectrum: Tensor
    diagnostics: dict[str, Tensor] = field(default_factory=dict)


_REGISTRY: dict[str, type["Method"]] = {}


def register_method(name: str) -> Callable[[type["Method"]], type["Method"]]:
    """Class decorator: register a :class:`Method` subclass under ``name``."""

    def deco(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RuntimeError(f"method {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_methods() -> list[str]:
    return sorted(_REGISTRY)


def get_method(name: str, **params: Any) -> "Method":
    """Instantiate a registered method with parameters (unknown ones are refused)."""
    if name not in _REGISTRY:
        raise ValueError(f"method: unknown method {name!r}; expected one of {available_methods()}")
    cls = _REGISTRY[name]
    valid = [f.name for f in dataclasses.fields(cls.Params)]
    for key in params:
        if key not in valid:
            raise ValueError(f"method {name!r}: unknown parameter {key!r}; valid parameters: {valid}")
    return cls(cls.Params(**params))


class Method:
    """Base class: a named, parameterised map (gram_in, gram_out) → DirectionResult."""

    name: ClassVar[str] = ""
    population_only: ClassVar[bool] = False

    @dataclass(frozen=True)
    class Params:
        pass

    def __init__(self, params: Any = None) -> None:
        self.params = params if params is not None else self.Params()
        if not isinstance(self.params, self.Params):
            raise TypeError(f"{type(self).__name__}: params must be {self.Params.__qualname__}")

    #: parameters added after stores were first written: hashed only when not at their
    #: default, so the groups of existing stores keep their hash (and stay resumable)
    hash_omit_default: ClassVar[tuple[str, ...]] = ()

    def param_hash(self) -> str:
        params = dataclasses.asdict(self.params)
        defaults = self.Params()
        for f in self.hash_omit_default:
            if params.get(f) == getattr(defaults, f):
                params.pop(f)
        blob = json.dumps({"name": self.name, "params": params},
                          sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"get_method({self.name!r}, **{dataclasses.asdict(self.params)!r})"

    def __call__(self, gram_in: Tensor, gram_out: Tensor) -> DirectionResult:
        gram_in, gram_out = _check_grams(gram_in, gram_out)
        return self._compute(gram_in, gram_out)

    def diagnostics_schema(self, d: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Per-sample diagnostics the factorize stage stores: name → (numpy dtype, trailing
        shape).  Keys are those of ``DirectionResult.diagnostics``."""
        return {}

    def _compute(self, gram_in: Tensor, gram_out: Tensor) -> DirectionResult:  # pragma: no cover
        raise NotImplementedError


def _check_grams(gram_in: Tensor, gram_out: Tensor) -> tuple[Tensor, Tensor]:
    for t, nm in ((gram_in, "gram_in"), (gram_out, "gram_out")):
        if not isinstance(t, Tensor):
            raise TypeError(f"{nm}: expected a torch.Tensor, received {type(t).__name__}")
    assert_shape(gram_in, [None, None, None], "gram_in")  # [B, d, d]
    B, d, _ = gram_in.shape
    assert_shape(gram_in, [B, d, d], "gram_in")
    assert_shape(gram_out, [B, d, d], "gram_out")
    return gram_in.to(torch.float64), gram_out.to(torch.float64)


def _finalize(V: Tensor, valid: Tensor, spectrum: Tensor, diagnostics: dict[str, Tensor]) -> DirectionResult:
    """V [B, d, d] rows best first; valid [B] count of leading valid rows."""
    B, k, d = V.shape
    ar = torch.arange(k, device=V.device)
    rowmask = (ar[None, :] < valid[:, None])[..., None]
    V = torch.where(rowmask, _sign_fix(torch.nan_to_num(V)), float("nan"))
    return DirectionResult(vectors=V.to(torch.float32), rank=valid.to(torch.int32),
                           spectrum=spectrum.to(torch.float32),
                           diagnostics={k_: v for k_, v in diagnostics.items()})


def _check_rank_tol(tol: Any, where: str) -> None:
    if isinstance(tol, str):
        if tol != "numpy":
            raise ValueError(f"{where}.rank_tol: expected 'numpy' or a positive float, received {tol!r}")
    elif isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise ValueError(f"{where}.rank_tol: expected 'numpy' or a positive float, received {tol!r}")


def _sym_eig_desc(A: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues descending [B, d] and eigenvectors as rows [B, d, d] of symmetric A."""
    w, V = torch.linalg.eigh(0.5 * (A + A.mT))
    return w.flip(-1), V.flip(-1).mT


@register_method("lowrankgan")
class LowRankGAN(Method):
    """LowRankGAN (Zhu et al., "Low-Rank Subspaces in GANs", NeurIPS 2021, §3.2).

    RPCA by PCP, ``min ‖L‖_* + λ‖S‖₁ s.t. M = L + S``, of both Grams; ``r_R = rank(L_R)``,
    ``r_B = rank(L_B)``; ``P`` = top r_R right singular vectors of L_R; ``N`` = right
    singular vectors of L_B from index ``r_B − relax``; directions
    ``D = normalize_rows(P N Nᵀ)`` in the order of σ(L_R), rows whose projection carries
    too little signal dropped: kept when ``ν_k·σ_k/σ_1 ≥ drop_tol`` (projected length
    times relative singular value; ``"auto"``: 100·eps of the dtype the Grams are passed in,
    see :func:`lrgan_dist.lowrank.resolve_drop_tol`; pass the Grams in the precision they
    were computed in).
    ``rank`` = number of valid rows; ``spectrum`` = singular values of L_R.  Diagnostics
    (:meth:`diagnostics_schema`, stored per sample by the factorize stage): rank_R, rank_B,
    null_start, sv_B, and per side the RPCA iterations / residual / gap / objective / ‖S‖₁
    (l1) / converged flag.
    """

    hash_omit_default = ("gamma",)

    @dataclass(frozen=True)
    class Params:
        lam: float | None = None
        mu: Literal["reference", "candes"] = "reference"
        tol: float = 1e-7
        max_iter: int = 10_000
        solver: Literal["fast", "reference", "ialm"] = "fast"
        gap_tol: float = 1e-4
        eig: Literal["auto", "full", "partial"] = "auto"
        gamma: float = 1.0
        relax: int = 0
        rank_tol: str | float = "numpy"
        null_clamp: Literal["zero", "reference"] = "zero"
        drop_tol: float | str = DROP_TOL

        def __post_init__(self) -> None:
            self.rpca_config()  # validates the RPCA fields
            _check_rank_tol(self.rank_tol, "lowrankgan")
            if isinstance(self.relax, bool) or not isinstance(self.relax, int) or self.relax < 0:
                raise ValueError(f"lowrankgan.relax: expected an integer ≥ 0, received {self.relax!r}")
            if self.null_clamp not in ("zero", "reference"):
                raise ValueError(f"lowrankgan.null_clamp: expected 'zero' or 'reference', "
                                 f"received {self.null_clamp!r}")
            try:
                resolve_drop_tol(self.drop_tol, torch.float32)
            except ValueError as e:
                raise ValueError(f"lowrankgan.{e}") from None

        def rpca_config(self) -> RPCAConfig:
            return RPCAConfig(lam=self.lam, mu=self.mu, tol=self.tol, max_iter=self.max_iter,
                              solver=self.solver, gap_tol=self.gap_tol, eig=self.eig,
                              gamma=self.gamma)

    def diagnostics_schema(self, d: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        out: dict[str, tuple[str, tuple[int, ...]]] = {
            "rank_R": ("i4", ()), "rank_B": ("i4", ()), "null_start": ("i4", ()), "sv_B": ("f4", (d,))}
        for side in ("R", "B"):
            out.update({f"iterations_{side}": ("i4", ()), f"residual_{side}": ("f4", ()),
                        f"gap_{side}": ("f4", ()), f"converged_{side}": ("u1", ()),
                        f"objective_{side}": ("f4", ()), f"l1_{side}": ("f4", ())})
        return out

    def __call__(self, gram_in: Tensor, gram_out: Tensor) -> DirectionResult:
        # the precision the Grams arrive in (the store's Gram dtype) sets drop_tol="auto"
        precision = gram_in.dtype if isinstance(gram_in, Tensor) else None
        gram_in, gram_out = _check_grams(gram_in, gram_out)
        return self._compute(gram_in, gram_out, precision)

    def _compute(self, gram_in: Tensor, gram_out: Tensor,
                 precision: torch.dtype | None = None) -> DirectionResult:
        p = self.params
        res = lowrankgan_directions(gram_in, gram_out, p.rpca_config(), relax=p.relax,
                                    rank_tol=p.rank_tol, null_clamp=p.null_clamp, drop_tol=p.drop_tol,
                                    precision=precision)
        B, d = res.sv_R.shape
        ar = torch.arange(d, device=res.sv_R.device)
        spectrum = torch.where(ar[None, :] < res.rank_R[:, None], res.sv_R, float("nan"))
        diag = {
            "rank_R": res.rank_R.to(torch.int32), "rank_B": res.rank_B.to(torch.int32),
            "null_start": res.null_start.to(torch.int32),
            "sv_B": res.sv_B.to(torch.float32),
        }
        for side, r in (("R", res.rpca_R), ("B", res.rpca_B)):
            diag[f"iterations_{side}"] = r.iterations.to(torch.int32)
            diag[f"residual_{side}"] = r.residual.to(torch.float32)
            diag[f"gap_{side}"] = r.gap.to(torch.float32)
            diag[f"converged_{side}"] = r.converged
            diag[f"objective_{side}"] = r.objective.to(torch.float32)
            diag[f"l1_{side}"] = r.l1.to(torch.float32)
        return _finalize(res.vectors, res.n_directions, spectrum, diag)


@register_method("resefa")
class ReSeFa(Method):
    """ReSeFa (Zhu et al., "Region-Based Semantic Factorization in GANs", ICML 2022).

    Maximise the Rayleigh quotient ``vᵀ M_R v / vᵀ B v`` with the regularised rest
    ``B = M_B + ε I``, ``ε = τ · tr(M_B) / d`` (``scale="mean"``: τ times the mean
    eigenvalue of M_B, so τ does not depend on d) or ``ε = τ · tr(M_B)`` (``scale="trace"``,
    DESIGN.md's literal form); τ = 1e-3.  If M_B is zero, ε falls back to τ times the same
    statistic of M_R (and to 1 if both are zero) so B stays definite.  The generalised
    eigenproblem ``M_R v = γ B v`` is solved as a symmetric-definite pencil: ``B = C Cᵀ``
    (Cholesky), ``eigh(C⁻¹ M_R C⁻ᵀ) = U diag(γ) Uᵀ``, ``v = C⁻ᵀ u`` (normalised to unit
    length), never through ``inv(B) M_R``.  ``spectrum`` = γ descending; ``rank`` =
    ``#{γ > rank_tol · γ_max}`` (directions with γ ≈ 0 do not change the region).
    """

    @dataclass(frozen=True)
    class Params:
        tau: float = 1e-3
        scale: Literal["mean", "trace"] = "mean"
        rank_tol: str | float = 1e-6

        def __post_init__(self) -> None:
            if not (isinstance(self.tau, (int, float)) and self.tau > 0):
                raise ValueError(f"resefa.tau: expected a positive number, received {self.tau!r}")
            if self.scale not in ("mean", "trace"):
                raise ValueError(f"resefa.scale: expected 'mean' or 'trace', received {self.scale!r}")
            _check_rank_tol(self.rank_tol, "resefa")

    def _compute(self, gram_in: Tensor, gram_out: Tensor) -> DirectionResult:
        p = self.params
        B_, d, _ = gram_in.shape
        A = 0.5 * (gram_in + gram_in.mT)
        Bm = 0.5 * (gram_out + gram_out.mT)
        div = d if p.scale == "mean" else 1
        stat_B = torch.diagonal(Bm, dim1=-2, dim2=-1).sum(-1).clamp(min=0) / div
        stat_A = torch.diagonal(A, dim1=-2, dim2=-1).sum(-1).clamp(min=0) / div
        stat = torch.where(stat_B > 0, stat_B, torch.where(stat_A > 0, stat_A, torch.ones_like(stat_A)))
        eps = p.tau * stat
        eye = torch.eye(d, dtype=A.dtype, device=A.device)
        C, info = torch.linalg.cholesky_ex(Bm + eps[:, None, None] * eye)
        # A Gram that is not PSD (round-off) can defeat Cholesky: add diagonal until it passes.
        for _ in range(8):
            if not bool((info > 0).any()):
                break
            eps = torch.where(info > 0, eps * 10, eps)
            C, info = torch.linalg.cholesky_ex(Bm + eps[:, None, None] * eye)
        finite = (info == 0) & torch.isfinite(A).all((-2, -1)) & torch.isfinite(Bm).all((-2, -1))
        C = torch.where(finite[:, None, None], C, eye)
        Ai = torch.where(finite[:, None, None], A, 0)
        X = torch.linalg.solve_triangular(C, Ai, upper=False)            # C⁻¹ A
        H = torch.linalg.solve_triangular(C, X.mT, upper=False)           # C⁻¹ A C⁻ᵀ
        gam, U = torch.linalg.eigh(0.5 * (H + H.mT))
        gam, U = gam.flip(-1), U.flip(-1)
        V = torch.linalg.solve_triangular(C.mT, U, upper=True)            # C⁻ᵀ U, columns
        V = V / torch.linalg.vector_norm(V, dim=-2, keepdim=True).clamp(min=torch.finfo(V.dtype).tiny)
        valid = numerical_rank(gam.clamp(min=0), p.rank_tol, d)
        valid = torch.where(finite, valid, 0)
        ar = torch.arange(d, device=A.device)
        spectrum = torch.where((ar[None, :] < valid[:, None]), gam, float("nan"))
        return _finalize(V.mT, valid, spectrum, {"ridge": eps.to(torch.float32)})


@register_method("jacobian_svd")
class JacobianSVD(Method):
    """Top eigenvectors of the region Gram (ablation of LowRankGAN without RPCA or projection).

    ``M_R = Jᵀ diag(R) J / ΣR = V diag(σ²) Vᵀ``: the right singular vectors of the region
    Jacobian, ordered by eigenvalue (σ² descending); ``gram_out`` is ignored.  ``rank`` =
    ``#{σ² > rank_tol · σ²_max}`` (numpy's default tolerance with ``"numpy"``).
    """

    @dataclass(frozen=True)
    class Params:
        rank_tol: str | float = 1e-6

        def __post_init__(self) -> None:
            _check_rank_tol(self.rank_tol, "jacobian_svd")

    def _compute(self, gram_in: Tensor, gram_out: Tensor) -> DirectionResult:
        d = gram_in.shape[-1]
        finite = torch.isfinite(gram_in).all((-2, -1))
        w, V = _sym_eig_desc(torch.where(finite[:, None, None], gram_in, 0))
        valid = torch.where(finite, numerical_rank(w.clamp(min=0), self.params.rank_tol, d), 0)
        ar = torch.arange(d, device=w.device)
        spectrum = torch.where(ar[None, :] < valid[:, None], w, float("nan"))
        return _finalize(V, valid, spectrum, {})


@register_method("ganspace")
class GANSpace(Method):
    """GANSpace (Härkönen, Hertzmann, Lehtinen & Paris, NeurIPS 2020): PCA of sampled latents.

    ``X`` [N, d] latents (or intermediate features), centred: ``X − x̄ = U Σ Vᵀ``; directions
    = rows of Vᵀ, spectrum = explained variance ``σ²/(N − 1)`` descending, ``rank`` =
    ``#{σ > rank_tol · σ_max}``.  Population only: call :meth:`from_latents` (B = 1); the
    per-sample ``__call__`` on Grams raises.
    """

    population_only: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Params:
        rank_tol: str | float = "numpy"
        center: bool = True

        def __post_init__(self) -> None:
            _check_rank_tol(self.rank_tol, "ganspace")
            if not isinstance(self.center, bool):
                raise ValueError(f"ganspace.center: expected a bool, received {self.center!r}")

    def __call__(self, gram_in: Tensor, gram_out: Tensor) -> DirectionResult:
        raise TypeError("ganspace is population-only: call from_latents(latents [N, d]) instead")

    def from_latents(self, latents: Tensor) -> DirectionResult:
        if not isinstance(latents, Tensor):
            raise TypeError(f"latents: expected a torch.Tensor, received {type(latents).__name__}")
        assert_shape(latents, [None, None], "latents")  # [N, d]
        N, d = latents.shape
        if N < 2:
            raise ValueError(f"latents: expected at least 2 samples, received {N}")
        X = latents.to(torch.float64)
        if not bool(torch.isfinite(X).all()):
            raise ValueError("latents: contains NaN or Inf")
        if self.params.center:
            X = X - X.mean(0, keepdim=True)
        _, s, Vh = torch.linalg.svd(X, full_matrices=False)  # s [min(N, d)]
        k = s.shape[0]
        sv = torch.zeros(d, dtype=X.dtype, device=X.device)
        sv[:k] = s
        V = torch.zeros(d, d, dtype=X.dtype, device=X.device)
        V[:k] = Vh
        valid = numerical_rank(sv[None], self.params.rank_tol, max(N, d))
        var = sv**2 / (N - 1)
        ar = torch.arange(d, device=X.device)
        spectrum = torch.where(ar[None, :] < valid[:, None], var[None], float("nan"))
        return _finalize(V[None], valid, spectrum, {"n_samples": torch.tensor([N], device=X.device)})


# Methods defined in their own modules register themselves on import.
from . import sefa as _sefa  # noqa: E402,F401  (registers "sefa")
