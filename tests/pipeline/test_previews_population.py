"""Issue 16/15: previews of the population and consensus directions; direction sign alignment.

1. The sign rule on a hand-written store (no Ray): first directions are ±(u + noise) with
   random signs; after alignment their mean pairwise cosine is ≥ 0 and equals the mean of
   |cos|; flipping a stored direction by hand and recomputing the signs leaves the aligned
   directions unchanged; export writes the aligned directions.
2. A small synthetic job through jacobians → factorize → population → previews: population
   and consensus previews exist for every (region, method) in the layout table (verify is
   clean), use the matched edit size, and show the same faces as the per-sample previews;
   per-sample frames are renders of the *aligned* directions (re-rendered here with the
   generator, independently of the stage).
3. The population-only method ``ganspace`` (PCA of the stored latents, no region) gets a
   population previews group in every region: its directions are the latents' principal
   axes (numpy SVD), α follows the matched-step rule recomputed in numpy from the stored
   Grams (the same in every region, clamp included), the scores refer to each region, and
   the s = ±1 frames are renders of the stored directions.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import zarr

from lrgan_dist.core.subspaces import align_signs
from lrgan_dist.pipeline.scheduler import prepare_store, submit
from lrgan_dist.pipeline.stages.population import sign_chunk
from lrgan_dist.spec import load_spec
from lrgan_dist.store.aligned import read_directions, sign_path
from lrgan_dist.store.verify import verify_store
from lrgan_dist.store.zarrstore import DONE, Store
from lrgan_dist.testing.cli import write_spec


def _mean_pairwise_cos(V: np.ndarray) -> tuple[float, float]:
    """(mean cos, mean |cos|) over distinct pairs of the unit rows of V [n, d]."""
    U = V / np.linalg.norm(V, axis=1, keepdims=True)
    C = U @ U.T
    iu = np.triu_indices(len(U), 1)
    return float(C[iu].mean()), float(np.abs(C[iu]).mean())


@pytest.fixture()
def hand_store(tmp_path):
    """A created store (synthetic generator) with one hand-written directions group and its population."""
    job = write_spec(tmp_path / "job.yaml", samples={"count": 12, "seed": 0}, regions={"eyes": {"box": [0.3, 0.2, 0.6, 0.8]}},
                     methods={"jacobian_svd": {}}, store={"uri": str(tmp_path / "s.zarr"), "chunk_samples": 4})
    spec = load_spec(job)
    st = prepare_store(spec)
    n, d = st.layout.n, st.layout.d
    rng = np.random.default_rng(0)
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    V = np.full((n, d, d), np.nan, dtype=np.float32)
    k = 3
    for i in range(n):
        q, _ = np.linalg.qr(np.column_stack([u + 0.3 * rng.standard_normal(d) / np.sqrt(d), rng.standard_normal((d, k - 1))]))
        V[i, :k] = (q.T * rng.choice([-1.0, 1.0], size=k)[:, None]).astype(np.float32)  # arbitrary signs
    path, _ = st.result_group("directions", "eyes", "jacobian_svd", "h" * 64, {"method": "jacobian_svd"})
    st.create_array(f"{path}/vectors", (n, d, d))[...] = V
    st.create_array(f"{path}/status", (n,))[...] = np.full(n, DONE, dtype=np.uint8)
    st.create_array(f"{path}/rank", (n,))[...] = np.full(n, k, dtype=np.int32)
    st.group["status"][...] = np.full(n, DONE, dtype=np.uint8)
    pop, _ = st.result_group("population", "eyes", "jacobian_svd", "h" * 64, {"method": "jacobian_svd"})
    Upop = np.zeros((d, d), dtype=np.float32)
    Upop[0] = -u  # the population's own sign is arbitrary too
    Upop[1:4] = np.linalg.qr(rng.standard_normal((d, 3)))[0].T
    st.create_array(f"{pop}/vectors", (d, d))[...] = Upop
    st.create_array(f"{pop}/sign", (n, d))
    return st, path, pop, Upop[:4].astype(np.float64)


def _sign_all(st: Store, path: str, pop: str, U: np.ndarray) -> None:
    for a, b in st.layout.chunks():
        sign_chunk(st.uri, (a, b), [(path, f"{pop}/sign", U)])


def test_aligned_first_directions_agree_and_a_hand_flip_changes_nothing(hand_store, tmp_path):
    st, path, pop, U = hand_store
    raw = read_directions(st, path, slice(None), 3, aligned=False).astype(np.float64)
    assert sign_path(st, path) == f"{pop}/sign"
    raw_cos, raw_abs = _mean_pairwise_cos(raw[:, 0])
    assert raw_cos < raw_abs - 0.1  # the stored signs really are mixed (else the test proves nothing)
    _sign_all(st, path, pop, U)
    A = read_directions(st, path, slice(None), 3).astype(np.float64)
    cos, abs_cos = _mean_pairwise_cos(A[:, 0])
    assert cos >= 0
    assert cos == pytest.approx(abs_cos, abs=1e-12)
    assert abs_cos == pytest.approx(raw_abs, abs=1e-12)
    # the rule, independently: each aligned direction has u_{j*}ᵀv ≥ 0 with j* = argmax |u_jᵀ v|
    ip = A @ (U / np.linalg.norm(U, axis=1, keepdims=True)).T  # [n, 3, p]
    best = np.take_along_axis(ip, np.abs(ip).argmax(axis=-1)[..., None], axis=-1)[..., 0]
    assert (best >= 0).all()
    signs = np.asarray(st.group[f"{pop}/sign"][:, :3])
    assert set(np.unique(signs)) == {-1, 1} and (np.asarray(st.group[f"{pop}/sign"][:, 3:]) == 0).all()
    # flip stored directions by hand; the population stage's signs are recomputed; aligned unchanged
    g = st.group[f"{path}/vectors"]
    v = np.asarray(g[5])
    v[0] *= -1
    v[2] *= -1
    g[5] = v
    assert not np.allclose(read_directions(st, path, [5], 3)[0], A[5])  # stale signs would show the flip
    _sign_all(st, path, pop, U)
    np.testing.assert_array_equal(read_directions(st, path, slice(None), 3).astype(np.float64), A)
    # export writes the aligned directions
    from lrgan_dist.apply.export import export_reference

    man = export_reference(st, "eyes", "jacobian_svd", tmp_path / "exp")
    assert man["exported"] == st.layout.n and man["signs"].startswith("aligned")
    got = np.load(tmp_path / "exp" / "eyes" / "jacobian_svd" / "sample_000005.npy")
    np.testing.assert_array_equal(got[:3], A[5].astype(np.float32))


def test_align_signs_fallback_is_flip_invariant():
    rng = np.random.default_rng(1)
    V = rng.standard_normal((4, 3, 8))
    V[0, 1] = np.nan
    for U in (np.zeros((0, 8)), np.eye(8)[:2]):
        s = align_signs(V, U)
        s2 = align_signs(-V, U)
        assert (s[0, 1] == 0) and (s2[0, 1] == 0)
        ok = s != 0
        np.testing.assert_array_equal((s[..., None] * V)[ok], (s2[..., None] * -V)[ok])
    # no population direction: the largest coordinate ends positive
    s = align_signs(V, np.zeros((0, 8)))
    A = s[..., None] * np.nan_to_num(V)
    top = np.take_along_axis(A, np.abs(A).argmax(axis=-1)[..., None], axis=-1)[..., 0]
    assert (top[s != 0] > 0).all()


# ----------------------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prevpop")
    path = write_spec(tmp / "job.yaml", samples={"count": 12, "seed": 0}, store={"uri": str(tmp / "s.zarr"), "chunk_samples": 4},
                      methods={"lowrankgan": {"lam": 0.25, "rank_tol": 1e-5}, "jacobian_svd": {}, "ganspace": {}},
                      previews={"samples": 3, "directions": 3, "strengths": [-1, 0, 1]})
    spec = load_spec(path)
    rep = submit(spec, stages=("jacobians", "factorize", "population", "previews"), show_progress=False, report_dir=False)
    return spec, tmp / "s.zarr", rep


@pytest.mark.slow
def test_population_and_consensus_previews(job):
    spec, uri, rep = job
    pv = rep["stages"]["previews"]
    assert pv["groups"] == 2 * 2 * 3 + 2, pv  # 2 regions × (2 methods × (per-sample, population, consensus) + ganspace)
    st = Store.open(str(uri))
    assert verify_store(st, full=True) == []
    g = zarr.open_group(str(uri), mode="r")
    target = float(g["previews"].attrs["target"])
    same_faces = defined = unclamped = 0
    faces: dict[int, np.ndarray] = {}  # sample → its unedited frame, the same in every group
    for r in ("eyes", "eyes_mask"):
        for lab in ("lowrankgan", "jacobian_svd"):
            base = g[f"previews/{r}/{lab}"]
            gi = g[f"regions/{r}/gram_in"][:].astype(np.float64)
            go = g[f"regions/{r}/gram_out"][:].astype(np.float64)
            for src in ("population", "consensus"):
                p = base[src]
                assert p.attrs["complete"] and p.attrs["source"] == src
                assert p["frames"].shape == base["frames"].shape
                smp = p["samples"][:]
                np.testing.assert_array_equal(smp, base["samples"][:])
                # same faces: the unedited frames (s = 0) are the per-sample group's
                for grp in (base, p):
                    z, dd = grp["frames"][:, :, 1], grp["directions"][:]  # [S, K, H', W', 3] at s = 0
                    for si, kk in zip(*np.nonzero(dd >= 0)):
                        if int(smp[si]) in faces:
                            np.testing.assert_array_equal(z[si, kk], faces[int(smp[si])])
                            same_faces += 1
                        faces.setdefault(int(smp[si]), z[si, kk])
                # the matched edit size, recomputed from the stored Grams and directions
                vec_path = f"population/{r}/{lab}" + ("/consensus" if src == "consensus" else "")
                V = g[f"{vec_path}/vectors"][:3].astype(np.float64)
                m = np.nan_to_num(g[f"regions/{r}/mask"][:].astype(np.float64))
                m = m[smp] if m.ndim == 3 else np.broadcast_to(m, (len(smp), *m.shape))  # per-sample masks move
                a_in = m.sum(axis=(1, 2))[:, None, None]
                a_out = m[0].size - a_in
                dirs = p["directions"][:]
                jn = np.sqrt(np.einsum("kd,sde,ke->sk", V, a_in * gi[smp] + a_out * go[smp], V))
                ok = dirs >= 0
                if src == "population":
                    assert (ok == (np.arange(3) < int(g[f"population/{r}/{lab}/rank"][...]))[None]).all()
                np.testing.assert_allclose(p["jnorm"][:][ok], jn[ok], rtol=1e-4)
                alpha = p["alpha"][:][ok]
                unclamped += int(np.isclose(jn[ok] * alpha, target, rtol=1e-4).sum())
                defined += int(ok.sum())
                assert (jn[ok] * alpha <= target * (1 + 1e-4)).all()
                assert np.isnan(p["alpha"][:][~ok]).all()
    assert same_faces >= 20 and len(faces) == 3
    assert defined >= 20 and unclamped > 0.5 * defined, (defined, unclamped)


@pytest.mark.slow
def test_per_sample_previews_render_the_aligned_directions(job):
    """Re-render s = +1 frames from the aligned directions with the generator: they match the stored frames,
    and at least one rendered direction was flipped (so the comparison distinguishes the signs)."""
    from lrgan_dist.apply.build import make_generator
    from lrgan_dist.core.jacobian import to_uint8_preview

    spec, uri, _ = job
    st = Store.open(str(uri))
    gen = make_generator(spec)
    flipped = 0
    for lab in ("lowrankgan", "jacobian_svd"):
        path = f"directions/eyes_mask/{lab}"
        p = st.group[f"previews/eyes_mask/{lab}"]
        smp = np.asarray(p["samples"][:])
        A = read_directions(st, path, smp, 3).astype(np.float64)
        signs = np.asarray(st.group[f"population/eyes_mask/{lab}/sign"].oindex[smp])[:, :3]
        dirs = np.asarray(p["directions"][:])
        flipped += int(((signs == -1) & (dirs >= 0)).sum())
        lat = torch.as_tensor(np.asarray(st.group["latents"].oindex[smp]), dtype=torch.float32)
        alpha = np.asarray(p["alpha"][:])
        frames = np.asarray(p["frames"][:])
        for s in range(len(smp)):
            for k in range(3):
                if dirs[s, k] < 0:
                    continue
                x = lat[s]
                X = torch.stack([x + float(a * alpha[s, k]) * torch.as_tensor(A[s, k], dtype=torch.float32) for a in (-1.0, 1.0)])
                with torch.no_grad():
                    Y = gen.forward(X, x.expand_as(X))
                u8 = to_uint8_preview(Y.float(), tuple(float(v) for v in gen.image_range), max_size=max(st.layout.preview_hw))
                diff = np.abs(u8.astype(int) - frames[s, k, [0, 2]].astype(int))
                assert diff.max() <= 1, (lab, s, k, diff.max())
    assert flipped >= 1


@pytest.mark.slow
def test_population_signs_in_store_and_manifest(job, tmp_path):
    spec, uri, _ = job
    g = zarr.open_group(str(uri), mode="r")
    for r in ("eyes", "eyes_mask"):
        for lab in ("lowrankgan", "jacobian_svd"):
            sg = g[f"population/{r}/{lab}/sign"]
            assert sg.dtype == np.int8 and sg.shape == (12, 64)
            assert json.loads(json.dumps(dict(sg.attrs)))["flag_meanings"] == "flipped undefined kept"
            assert sg.attrs["reference"] in ("population", "consensus")
            rank = g[f"directions/{r}/{lab}/rank"][:]
            s = sg[:]
            for i in range(12):
                assert (s[i, : rank[i]] != 0).all() and (s[i, rank[i]:] == 0).all()


@pytest.mark.slow
def test_population_only_method_previews(job):
    from lrgan_dist.apply.build import make_generator
    from lrgan_dist.core.jacobian import to_uint8_preview
    from lrgan_dist.pipeline.stages.previews import MAX_ALPHA_RATIO

    spec, uri, rep = job
    st = Store.open(str(uri))
    assert verify_store(st, full=True) == []
    g = zarr.open_group(str(uri), mode="r")
    assert "ganspace" not in g["directions/eyes"]  # population only: no per-sample group to preview
    target = float(g["previews"].attrs["target"])
    # the stored directions are the principal axes of the centred latents of the done samples (numpy, independently)
    lat = g["latents"][:].astype(np.float64)[g["status"][:] == DONE]
    Vt = np.linalg.svd(lat - lat.mean(0), full_matrices=False)[2]
    V = g["population/_latent/ganspace/vectors"][:3].astype(np.float64)
    np.testing.assert_allclose(np.abs(np.sum(V * Vt[:3], axis=1)), 1.0, atol=1e-5)
    by_region = {}
    for r in ("eyes", "eyes_mask"):
        p = g[f"previews/{r}/ganspace/population"]
        assert p.attrs["complete"] and p.attrs["source"] == "population" and p.attrs["method"] == "ganspace"
        assert p.attrs["directions_path"] == "population/_latent/ganspace"
        assert "samples" not in g[f"previews/{r}/ganspace"]  # only the population subgroup
        smp = p["samples"][:]
        base = g[f"previews/{r}/lowrankgan"]
        np.testing.assert_array_equal(smp, base["samples"][:])  # the same faces as every other method
        seen = np.zeros(len(smp), dtype=bool)
        for lab in ("lowrankgan", "jacobian_svd"):  # s = 0: the unedited sample, wherever a per-sample group has one
            other = g[f"previews/{r}/{lab}"]
            for si, kk in zip(*np.nonzero(other["directions"][:] >= 0)):
                np.testing.assert_array_equal(p["frames"][si, 0, 1], other["frames"][si, kk, 1])
                seen[si] = True
        assert seen.all()
        assert (p["directions"][:] == np.arange(3)[None]).all()  # 11 principal axes (12 samples): top 3 defined
        gi = g[f"regions/{r}/gram_in"][:].astype(np.float64)[smp]
        go = g[f"regions/{r}/gram_out"][:].astype(np.float64)[smp]
        m = np.nan_to_num(g[f"regions/{r}/mask"][:].astype(np.float64))
        m = m[smp] if m.ndim == 3 else np.broadcast_to(m, (len(smp), *m.shape))
        a_in = m.sum(axis=(1, 2))[:, None]
        a_out = m[0].size - a_in
        e_in = np.einsum("kd,sde,ke->sk", V, gi, V)
        e_out = np.einsum("kd,sde,ke->sk", V, go, V)
        jn = np.sqrt(a_in * e_in + a_out * e_out)
        rnd = np.sqrt(np.trace(a_in[:, :, None] * gi + a_out[:, :, None] * go, axis1=1, axis2=2) / V.shape[1])
        alpha = np.minimum(target / jn, MAX_ALPHA_RATIO * target / rnd[:, None])
        np.testing.assert_allclose(p["jnorm"][:], jn, rtol=1e-4)
        np.testing.assert_allclose(p["alpha"][:], alpha, rtol=1e-4)
        np.testing.assert_allclose(p["energy_in"][:], e_in, rtol=1e-4)
        np.testing.assert_allclose(p["locality"][:], a_in * e_in / jn**2, rtol=1e-4)
        by_region[r] = p
    # region-free directions: the same α and frames in every region, scores of each region
    np.testing.assert_allclose(by_region["eyes"]["alpha"][:], by_region["eyes_mask"]["alpha"][:], rtol=1e-5)
    np.testing.assert_array_equal(by_region["eyes"]["frames"][:], by_region["eyes_mask"]["frames"][:])
    assert np.abs(by_region["eyes"]["locality"][:] - by_region["eyes_mask"]["locality"][:]).max() > 1e-3
    # the s = ±1 frames are renders of the stored directions at the stored α
    p = by_region["eyes"]
    smp, alpha, frames = p["samples"][:], p["alpha"][:], p["frames"][:]
    gen = make_generator(spec)
    x0 = torch.as_tensor(g["latents"][:][smp], dtype=torch.float32)
    for s in range(len(smp)):
        X = torch.stack([x0[s] + float(a * alpha[s, k]) * torch.as_tensor(V[k], dtype=torch.float32)
                         for k in range(3) for a in (-1.0, 1.0)])
        with torch.no_grad():
            Y = gen.forward(X, x0[s].expand_as(X))
        u8 = to_uint8_preview(Y.float(), tuple(float(v) for v in gen.image_range), max_size=max(st.layout.preview_hw))
        diff = np.abs(u8.astype(int) - frames[s][:, [0, 2]].reshape(u8.shape).astype(int))
        assert diff.max() <= 1, (s, diff.max())
    assert not any("ganspace" in n for n in rep["stages"]["previews"]["notes"])
