"""Tests of lrgan_dist.core.rpca: RPCA solvers, ranks, null space, LowRankGAN directions.

Independent references (numpy, one problem at a time) in :mod:`lrgan_dist.testing.grams`,
shared with bench/bench_rpca.py:
* ``np_pcp_reference`` — the paper's ``RobustPCA.fit`` loop (SVD-based, fixed μ);
* ``np_lowrankgan`` — the paper's ``compute_directions.py`` steps 2-5 from given L's.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lrgan_dist.core.lowrankgan import lowrankgan_directions, null_space_start, numerical_rank, project_directions
from lrgan_dist.core.rpca import RPCAConfig, mu_from_rule, pcp_objective, rpca
from lrgan_dist.testing.grams import (
    energetic,
    min_principal_cos,
    np_lowrankgan,
    np_pcp_reference,
    row_span,
    structured_grams,
)

# ----------------------------------------------------------------------------- helpers


def low_rank_plus_sparse(n1, n2, rank, frac, seed, symmetric):
    rng = np.random.default_rng(seed)
    if symmetric:
        U = np.linalg.qr(rng.standard_normal((n1, rank)))[0]
        L0 = (U * rng.uniform(1.0, 2.0, rank) * n1 / 4) @ U.T
        mask = np.triu(rng.random((n1, n1)) < frac)
        S0 = np.triu(rng.uniform(-1, 1, (n1, n1)) * mask)
        S0 = S0 + np.triu(S0, 1).T
    else:
        L0 = rng.standard_normal((n1, rank)) @ rng.standard_normal((rank, n2))
        S0 = rng.uniform(-1, 1, (n1, n2)) * (rng.random((n1, n2)) < frac)
    return L0, S0


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


# ----------------------------------------------------------------------------- config & API


def test_config_validation():
    with pytest.raises(ValueError, match="mu"):
        RPCAConfig(mu="entrywise")
    with pytest.raises(ValueError, match="solver"):
        RPCAConfig(solver="svd")
    with pytest.raises(ValueError, match="lam"):
        RPCAConfig(lam=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        RPCAConfig(max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        RPCAConfig(tol=0)
    with pytest.raises(ValueError, match="rho"):
        RPCAConfig(rho=1.0)
    for bad in ("auto", "race", 0, -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="gamma"):
            RPCAConfig(gamma=bad)
    assert RPCAConfig(gamma=3).gamma == 3
    with pytest.raises(ValueError, match="warm_slow_rho"):
        RPCAConfig(warm_slow_rho=1.0)
    for bad in ((1.0, 0.5), (0.0, 1.0), (0.01,), [0.01, 1.0], (0.01, float("inf"))):
        with pytest.raises(ValueError, match="warm_band"):
            RPCAConfig(warm_band=bad)
    assert RPCAConfig().solver == "fast" and RPCAConfig().mu == "reference"


def test_shape_errors():
    with pytest.raises(ValueError, match=r"expected shape"):
        rpca(torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"M_B: expected shape \[2, 8, 8\], received \[2, 8, 7\]"):
        lowrankgan_directions(torch.eye(8).expand(2, 8, 8), torch.zeros(2, 8, 7))
    with pytest.raises(ValueError, match="rank_tol"):
        numerical_rank(torch.ones(3), tol="scipy")


def test_mu_rules_match_numpy():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((7, 5))
    mu = mu_from_rule(torch.tensor(M)[None], "reference").item()
    assert mu == pytest.approx(35 / (4 * np.linalg.norm(M, ord=1)), rel=1e-14)
    mu = mu_from_rule(torch.tensor(M)[None], "candes").item()
    assert mu == pytest.approx(35 / (4 * np.abs(M).sum()), rel=1e-14)


# ----------------------------------------------------------------------------- reference solver


@pytest.mark.parametrize("mu_rule", ["reference", "candes"])
@pytest.mark.parametrize("kind", ["symmetric", "general"])
def test_one_iteration_equals_numpy(mu_rule, kind):
    rng = np.random.default_rng(1)
    if kind == "symmetric":
        M = structured_grams(24, seed=3)[0]
    else:
        M = rng.standard_normal((20, 13))
    lam = 1 / math.sqrt(max(M.shape))
    L_np, S_np, it = np_pcp_reference(M, lam, mu_rule, max_iter=1)
    assert it == 1
    res = rpca(torch.tensor(M), RPCAConfig(solver="reference", mu=mu_rule, max_iter=1))
    assert res.iterations.tolist() == [1]
    assert rel(res.L[0].numpy(), L_np) < 1e-10
    assert rel(res.S[0].numpy(), S_np) < 1e-10


@pytest.mark.parametrize("mu_rule", ["reference", "candes"])
def test_reference_equals_numpy_loop(mu_rule):
    """Full runs of the paper's iteration agree with an independent numpy loop."""
    M = structured_grams(32, seed=0)[1]
    lam = 1 / math.sqrt(32)
    L_np, S_np, it_np = np_pcp_reference(M, lam, mu_rule)
    assert it_np < 3000  # the matrix is chosen to converge in bounded time
    res = rpca(torch.tensor(M), RPCAConfig(solver="reference", mu=mu_rule))
    assert bool(res.converged[0])
    assert abs(int(res.iterations[0]) - it_np) <= 2
    assert rel(res.L[0].numpy(), L_np) < 1e-4
    assert rel(res.S[0].numpy(), S_np) < 1e-4


def test_reference_general_matrix_equals_numpy_loop():
    L0, S0 = low_rank_plus_sparse(30, 20, 2, 0.05, seed=4, symmetric=False)
    M = L0 + S0
    lam = 1 / math.sqrt(30)
    L_np, _, it_np = np_pcp_reference(M, lam)
    res = rpca(torch.tensor(M), RPCAConfig(solver="reference"))
    assert res.iterations.item() == it_np
    assert rel(res.L[0].numpy(), L_np) < 1e-4


# ----------------------------------------------------------------------------- recovery


@pytest.mark.parametrize("solver", ["reference", "fast", "ialm"])
def test_recovers_symmetric_low_rank_plus_sparse(solver):
    L0, S0 = low_rank_plus_sparse(64, 64, 3, 0.05, seed=0, symmetric=True)
    res = rpca(torch.tensor(L0 + S0), RPCAConfig(solver=solver))
    assert bool(res.converged[0])
    assert rel(res.L[0].numpy(), L0) < 1e-3
    assert rel(res.S[0].numpy(), S0) < 1e-3
    assert numerical_rank(res.sv).item() == 3
    assert numerical_rank(res.sv, 1e-6).item() == 3
    np.testing.assert_allclose(res.L[0].numpy(), res.L[0].numpy().T, atol=0)


@pytest.mark.parametrize("solver", ["reference", "fast", "ialm"])
def test_recovers_general_low_rank_plus_sparse(solver):
    L0, S0 = low_rank_plus_sparse(60, 40, 2, 0.05, seed=1, symmetric=False)
    res = rpca(torch.tensor(L0 + S0), RPCAConfig(solver=solver))
    assert bool(res.converged[0])
    assert rel(res.L[0].numpy(), L0) < 1e-3
    assert numerical_rank(res.sv, n=60).item() == 2


# ----------------------------------------------------------------------------- fast vs reference


def _parity(d, seeds, lam, mu, rank_tol, **fast_kw):
    pairs = [structured_grams(d, seed=s) for s in seeds]
    M_R = torch.tensor(np.stack([p[0] for p in pairs]))
    M_B = torch.tensor(np.stack([p[1] for p in pairs]))
    out = {}
    for solver in ("reference", "fast"):
        cfg = RPCAConfig(lam=lam, mu=mu, solver=solver, **(fast_kw if solver == "fast" else {}))
        out[solver] = lowrankgan_directions(M_R, M_B, cfg, rank_tol=rank_tol)
    ref, fast = out["reference"], out["fast"]
    for side in ("rpca_R", "rpca_B"):
        r, f = getattr(ref, side), getattr(fast, side)
        assert bool(r.converged.all()), f"reference did not converge on {side}: {r.iterations}"
        assert bool(f.converged.all())
        relobj = ((f.objective - r.objective).abs() / r.objective).max().item()
        assert relobj < 1e-4, (side, relobj)
        # the fast solver certifies its optimum; the reference does not
        assert bool((f.gap <= RPCAConfig().gap_tol).all())
    for b in range(len(seeds)):
        a = energetic(ref.vectors[b].numpy(), pairs[b][0])
        c = energetic(fast.vectors[b].numpy(), pairs[b][0])
        assert a.shape == c.shape, (b, a.shape, c.shape)
        assert min_principal_cos(a, c) >= 0.99
    return ref, fast


@pytest.mark.parametrize("band", ["slow", "plain"])
def test_fast_matches_reference_d64(band):
    # the default warm start (slow band) and the plain ρ = 1.1 schedule reach the same optimum
    kw = {} if band == "slow" else {"warm_slow_rho": 1.1}
    ref, fast = _parity(64, seeds=[1, 7], lam=None, mu="reference", rank_tol=1e-3, **kw)
    # … in fewer iterations
    assert fast.rpca_R.iterations.sum() + fast.rpca_B.iterations.sum() < (
        ref.rpca_R.iterations.sum() + ref.rpca_B.iterations.sum())


def _generator_grams(kind):
    """One sample's (M_R, M_B), float32 as the pipeline stores them, and λ."""
    from lrgan_dist.core.jacobian import JacobianConfig, JacobianEngine
    from lrgan_dist.generators import build_generator
    from lrgan_dist.regions import box_mask

    if kind == "synthetic":  # eye box of a centred face; λ = 0.25 (see test_ground_truth.py)
        G = build_generator("synthetic", {"latent_dim": 64, "resolution": 64, "seed": 0})
        x, box, res, lam = G.centre(G.sample_latents(0, [0])), G.canonical_boxes()["eyes"], 64, 0.25
    else:  # random-weight StyleGAN2, Jacobian in w (d = 128), a box across the upper middle
        G = build_generator("stylegan2", {"random_init": {
            "z_dim": 128, "w_dim": 128, "img_resolution": 32, "channel_base": 2048, "channel_max": 64,
            "mapping_layers": 4, "perturb": 0.1, "seed": 0}, "space": "w"})
        x, box, res, lam = G.sample_latents(0, [0]), (0.4, 0.25, 0.55, 0.75), 32, None
    mask = torch.as_tensor(box_mask(box, (res, res), (res, res)))[None]
    out = JacobianEngine(G, JacobianConfig(grid=(res, res))).compute(x, mask)
    return out["gram_in"][:, 0], out["gram_out"][:, 0], lam


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["synthetic", "stylegan2"])
def test_fast_matches_reference_on_generator_grams(kind):
    """Parity on Grams of real generators: the synthetic generator (d = 64, degenerate: 40
    latent dimensions without effect; the reference runs into its 10 000-iteration cap,
    the fast solver certifies in ~460/~560) and a random-weight StyleGAN2 (d = 128)."""
    gi, go, lam = _generator_grams(kind)
    ref = lowrankgan_directions(gi, go, RPCAConfig(lam=lam, solver="reference"), rank_tol=1e-3)
    for gamma in (1.0, 3.0):  # the default step, and a larger one
        fast = lowrankgan_directions(gi, go, RPCAConfig(lam=lam, gamma=gamma), rank_tol=1e-3)
        _check_generator_parity(kind, gi, ref, fast)


def _check_generator_parity(kind, gi, ref, fast):
    for side in ("rpca_R", "rpca_B"):
        r, f = getattr(ref, side), getattr(fast, side)
        assert bool(f.converged.all()) and bool((f.gap <= RPCAConfig().gap_tol).all())
        relobj = ((f.objective - r.objective) / r.objective).item()
        print(kind, side, "iterations ref / fast", r.iterations.item(), f.iterations.item(),
              "objective fast vs ref", f"{relobj:+.1e}", "gap ref / fast", f"{r.gap.item():.1e} / {f.gap.item():.1e}")
        assert abs(relobj) < 1e-4
    assert ref.rank_R.tolist() == fast.rank_R.tolist() and ref.rank_B.tolist() == fast.rank_B.tolist()
    a = energetic(ref.vectors[0].numpy(), gi[0].double().numpy())
    c = energetic(fast.vectors[0].numpy(), gi[0].double().numpy())
    cos = min_principal_cos(a, c)
    print(kind, "carrying directions", len(a), len(c), "span dimension", row_span(a).shape[1],
          "smallest principal cosine", cos)
    assert cos >= 0.99


@pytest.mark.slow
def test_fast_matches_reference_d512():
    # The paper's setting (λ = 1/60, reference μ): the reference needs ~260 / ~410
    # iterations here (about 15 s at 2 threads).
    _parity(512, seeds=[0], lam=1 / 60, mu="reference", rank_tol=1e-3)


# ----------------------------------------------------------------------------- batching, dtypes, edge cases


@pytest.mark.parametrize("solver", ["reference", "fast"])
def test_batch_equals_individual_and_early_exit(solver):
    Ms = [structured_grams(24, seed=s)[i] for s in (0, 1) for i in (0, 1)]
    Ms.append(np.eye(24))  # converges immediately-ish
    M = torch.tensor(np.stack(Ms))
    cfg = RPCAConfig(solver=solver)
    batch = rpca(M, cfg)
    its = batch.iterations.tolist()
    assert len(set(its)) > 1  # problems stop independently
    for b in range(len(Ms)):
        one = rpca(M[b], cfg)
        assert one.iterations.item() == its[b]
        # batched and single LAPACK calls round differently; Anderson mixing amplifies that
        assert rel(batch.L[b].numpy(), one.L[0].numpy()) < (1e-8 if solver == "reference" else 1e-5)


def test_float32_and_unbatched_input():
    M = torch.tensor(structured_grams(24, seed=5)[0])
    r64 = rpca(M)
    r32 = rpca(M.float(), RPCAConfig(dtype="input"))
    assert r32.L.dtype == torch.float32 and r32.L.shape == (1, 24, 24)
    assert bool(r32.converged[0]) or r32.residual[0] < 1e-5
    assert rel(r32.L[0].double().numpy(), r64.L[0].numpy()) < 1e-3


def test_zero_and_nonfinite_problems():
    good = structured_grams(16, seed=0)[0]
    bad = good.copy()
    bad[0, 0] = np.nan
    M = torch.tensor(np.stack([np.zeros((16, 16)), bad, good]))
    for solver in ("fast", "reference"):
        res = rpca(M, RPCAConfig(solver=solver))
        assert res.iterations[0] == 0 and bool(res.converged[0])
        assert torch.count_nonzero(res.L[0]) == 0 and torch.count_nonzero(res.S[0]) == 0
        assert not bool(res.converged[1]) and torch.isnan(res.L[1]).all()
        assert bool(res.converged[2]) and torch.isfinite(res.L[2]).all()
        alone = rpca(M[2], RPCAConfig(solver=solver))
        assert rel(res.L[2].numpy(), alone.L[0].numpy()) < 1e-8


def test_result_fields_consistent():
    M = torch.tensor(np.stack(structured_grams(20, seed=2)))
    res = rpca(M, RPCAConfig())
    for b in range(2):
        L = res.L[b].numpy()
        sv = np.linalg.svd(L, compute_uv=False)
        np.testing.assert_allclose(res.sv[b].numpy(), sv, atol=1e-10 * sv.max())
        assert (np.diff(res.sv[b].numpy()) <= 1e-12).all()
        # vh rows are right singular vectors in the order of sv
        r = numerical_rank(res.sv[b : b + 1]).item()
        V = res.vh[b, :r].numpy()
        np.testing.assert_allclose(np.linalg.norm(L @ V.T, axis=0), res.sv[b, :r].numpy(), rtol=1e-8)
    np.testing.assert_allclose(res.l1.numpy(), res.S.abs().sum((-2, -1)).numpy())
    np.testing.assert_allclose(res.objective.numpy(), pcp_objective(res.L, res.S, res.lam[0]).numpy(),
                               rtol=1e-10)
    resid = torch.linalg.matrix_norm(M - res.L - res.S) / torch.linalg.matrix_norm(M)
    np.testing.assert_allclose(res.residual.numpy(), resid.numpy(), rtol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu():
    M = torch.tensor(np.stack(structured_grams(32, seed=0)))
    cpu = rpca(M)
    gpu = rpca(M.cuda())
    assert gpu.L.device.type == "cuda"
    assert rel(gpu.L.cpu().numpy(), cpu.L.numpy()) < 1e-6


# ----------------------------------------------------------------------------- ranks & directions


def test_numerical_rank_matches_numpy():
    rng = np.random.default_rng(0)
    for r in (0, 1, 5, 12):
        A = rng.standard_normal((12, r)) @ rng.standard_normal((r, 12)) if r else np.zeros((12, 12))
        sv = torch.tensor(np.linalg.svd(A, compute_uv=False))
        assert numerical_rank(sv).item() == np.linalg.matrix_rank(A)
    sv = torch.tensor([[4.0, 1.0, 1e-3, 1e-5, 0.0], [0, 0, 0, 0, 0]])
    assert numerical_rank(sv, 1e-4).tolist() == [3, 0]
    assert numerical_rank(sv, 0.1).tolist() == [2, 0]
    assert numerical_rank(sv).tolist() == [4, 0]


def test_null_space_start():
    r = torch.tensor([0, 3, 8])
    assert null_space_start(r, 8).tolist() == [0, 3, 8]
    assert null_space_start(r, 8, relax=2).tolist() == [0, 1, 6]
    assert null_space_start(r, 8, clamp="reference").tolist() == [1, 3, 7]


@pytest.mark.parametrize("relax", [0, 2])
@pytest.mark.parametrize("clamp", ["zero", "reference"])
def test_directions_equal_paper_code_on_same_L(relax, clamp):
    """Steps 2-5 against compute_directions.py, given the L's our RPCA produced."""
    pairs = [structured_grams(32, seed=s) for s in (1, 3)]
    M_R = torch.tensor(np.stack([p[0] for p in pairs]))
    M_B = torch.tensor(np.stack([p[1] for p in pairs]))
    res = lowrankgan_directions(M_R, M_B, relax=relax, null_clamp=clamp)
    for b in range(2):
        D, r_R, r_B = np_lowrankgan(res.rpca_R.L[b].numpy(), res.rpca_B.L[b].numpy(), relax, clamp)
        assert res.rank_R[b] == r_R and res.rank_B[b] == r_B
        keep = np.linalg.norm(D, axis=1) > 0  # (nothing is dropped here)
        n = int(res.n_directions[b])
        assert n == keep.sum() == r_R
        ours = res.vectors[b, :n].numpy()
        # same rows up to sign; ours ordered by in-region energy after projection (issue 18)
        e = np.einsum("kd,de,ke->k", D, M_R[b].numpy(), D)
        D = D[np.argsort(-e, kind="stable")]
        np.testing.assert_allclose(np.abs((ours * D).sum(1)), 1.0, atol=1e-8)
        np.testing.assert_allclose(res.energy[b, :n].numpy(), np.sort(e)[::-1], rtol=1e-8)
        assert torch.isnan(res.vectors[b, n:]).all()


def test_projection_drops_directions_inside_the_rest():
    d = 6
    e = torch.eye(d, dtype=torch.float64)
    # principal directions e0 (lies in the row space of L_B) and e1 + e2
    P = torch.stack([e[0], (e[1] + e[2]) / math.sqrt(2)] + [e[3]] * 4)[None]
    Vb = torch.stack([e[0], e[1], e[2], e[3], e[4], e[5]])[None]
    D, count, _ = project_directions(P, torch.tensor([2]), Vb, torch.tensor([2]))
    assert count.item() == 1  # e0 projects to 0 and is dropped, not normalised into noise
    np.testing.assert_allclose(D[0, 0].numpy(), e[2].numpy(), atol=1e-12)
    assert torch.isnan(D[0, 1:]).all()


def test_identical_grams_give_no_directions():
    M = torch.tensor(structured_grams(16, seed=0)[0])
    res = lowrankgan_directions(M, M)
    assert res.n_directions.item() == 0
    assert torch.isnan(res.vectors).all()


def test_rank_deficient_inputs():
    d = 12
    v = torch.randn(d, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    M_R = torch.stack([torch.zeros(d, d), torch.outer(v, v), torch.outer(v, v)]).double()
    M_B = torch.stack([torch.outer(v, v), torch.zeros(d, d), torch.outer(v, v)]).double()
    res = lowrankgan_directions(M_R, M_B)
    assert res.n_directions.tolist() == [0, 1, 0]
    np.testing.assert_allclose(abs(res.vectors[1, 0] @ v / v.norm()).item(), 1.0, atol=1e-8)
    valid = ~torch.isnan(res.vectors).any(-1)
    assert torch.isfinite(res.vectors[valid]).all()


def test_fast_stopped_by_max_iter_returns_best_feasible_pair():
    """A problem cut off by max_iter gets the best pair (L, M − L) seen, not the last
    (possibly Anderson-extrapolated) iterate: its objective never rises with max_iter."""
    M = torch.tensor(np.stack(structured_grams(64, seed=1)))
    objs = []
    for k in (5, 20, 60):
        r = rpca(M, RPCAConfig(max_iter=k))
        assert not bool(r.converged.any())
        np.testing.assert_allclose((r.L + r.S).numpy(), M.numpy(), rtol=0, atol=1e-12)  # S = M − L
        np.testing.assert_allclose(r.objective.numpy(), pcp_objective(r.L, r.S, 1 / 8).numpy(), rtol=1e-9)
        objs.append(r.objective)
    assert bool((objs[1] <= objs[0]).all()) and bool((objs[2] <= objs[1]).all())


@pytest.mark.parametrize("d", [64, 160])
def test_ialm_partial_eig_equals_full(d):
    """Warm-started partial eigendecompositions change the cost, not the iteration: the
    same iteration counts (±2: a Ritz step is accurate to ~1e-9, which can move the stop by
    an iteration; stopping an iteration apart moves L by up to ~1e-4 relative and the
    objective by ≤ 2.3e-7, far inside ialm's own distance to the optimum), the same LowRankGAN
    directions, and the full spectrum and vectors of the final L."""
    pairs = [structured_grams(d, seed=s) for s in (0, 3)]
    M = torch.tensor(np.stack([m for p in pairs for m in p]))
    full = rpca(M, RPCAConfig(solver="ialm"))
    part = rpca(M, RPCAConfig(solver="ialm", eig="partial"))
    assert (part.iterations - full.iterations).abs().max().item() <= 2
    assert bool(part.converged.all())
    for b in range(M.shape[0]):
        assert rel(part.L[b].numpy(), full.L[b].numpy()) < 1e-3
    # measured: partial vs full ≤ 2.3e-7, while ialm itself sits up to 9e-6 above the optimum
    np.testing.assert_allclose(part.objective.numpy(), full.objective.numpy(), rtol=1e-6)
    np.testing.assert_allclose(part.sv.numpy(), full.sv.numpy(), atol=1e-3 * full.sv.max().item())
    # vh: orthonormal rows that reconstruct L (its null space included, for LowRankGAN)
    eye = np.eye(d)
    for b in range(M.shape[0]):
        V = part.vh[b].numpy()
        np.testing.assert_allclose(V @ V.T, eye, atol=1e-10)
        r = int(numerical_rank(part.sv[b:b + 1], 1e-9))
        rec = V[:r].T @ np.diag(np.diag(V[:r] @ part.L[b].numpy() @ V[:r].T)) @ V[:r]
        assert rel(rec, part.L[b].numpy()) < 1e-6
    # the LowRankGAN directions that follow are the same
    a = lowrankgan_directions(M[0::2], M[1::2], RPCAConfig(solver="ialm"), rank_tol=1e-3)
    c = lowrankgan_directions(M[0::2], M[1::2], RPCAConfig(solver="ialm", eig="partial"), rank_tol=1e-3)
    assert a.rank_R.tolist() == c.rank_R.tolist() and a.rank_B.tolist() == c.rank_B.tolist()
    for b in range(2):
        ea, ec = energetic(a.vectors[b].numpy(), pairs[b][0]), energetic(c.vectors[b].numpy(), pairs[b][0])
        assert ea.shape == ec.shape and min_principal_cos(ea, ec) > 0.999


def test_eig_option_validated():
    with pytest.raises(ValueError, match="RPCAConfig.eig"):
        RPCAConfig(eig="some")
