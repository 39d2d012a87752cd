"""The transfer stage on Ray: layout, equivalence with direct numpy, resume, and the
acceptance criteria of the cross-image study on the synthetic generator.

Two stores: a small one (16 samples) that the resume tests may damage, and the shared
study store (72 samples, four method entries) that ``build_study_store`` creates once per
pytest session and test_analysis / test_edit reuse.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from lrgan_dist.core.subspaces import carrying
from lrgan_dist.spec import SpecError, parse_spec
from lrgan_dist.store.zarrstore import Store, StoreError
from lrgan_dist.testing.stores import STUDY_SPEC, build_study_store  # noqa: F401


@pytest.fixture(scope="module")
def ray():
    from lrgan_dist.pipeline.runtime import ray_session

    with ray_session(num_cpus=2) as r:
        yield r


@pytest.fixture(scope="module")
def small(tmp_path_factory, ray):
    from lrgan_dist.pipeline.scheduler import submit
    from lrgan_dist.pipeline.stages.transfer import run_transfer

    uri = str(tmp_path_factory.mktemp("tsmall") / "store.zarr")
    raw = json.loads(json.dumps(STUDY_SPEC))
    raw.update({"samples": {"count": 16, "seed": 3}, "store": {"uri": uri, "chunk_samples": 4},
                "methods": {"lowrankgan": {"solver": "ialm"}, "jacobian_svd": {}},
                "transfer": {"sources": [1, 5], "directions": 4, "realized_pairs": 6, "strengths": [0.05],
                             "similarity_samples": 6, "score_on": {"eyes": ["eyes", "eyes_mask"]}}})
    spec = parse_spec(raw)
    submit(spec, stages=("jacobians", "factorize"), show_progress=False)
    store = Store.open(uri, mode="a")
    report = run_transfer(spec, store, ray, show_progress=False)
    return spec, store, report


@pytest.fixture(scope="module")
def study(tmp_path_factory, ray):
    return build_study_store(tmp_path_factory.getbasetemp())


# ----------------------------------------------------------------------------- small store


def test_layout_shapes_chunks_and_dimension_names(small):
    spec, store, report = small
    g = store.group
    n, d, k = 16, 64, 4
    assert report["sources"] == 2 and report["targets"] == 16
    assert sorted(report["groups"]) == ["eyes/jacobian_svd", "eyes/lowrankgan", "eyes_mask/jacobian_svd",
                                        "eyes_mask/lowrankgan"]
    assert g["transfer/linear/sources"][:].tolist() == [1, 5]
    a = g["transfer/linear/eyes/lowrankgan/on/eyes_mask/energy_in"]
    assert a.shape == (2, n, k) and a.chunks == (2, 4, k)
    # one dimension name per meaning: the scored directions are not the store's direction axis
    assert list(a.metadata.dimension_names) == ["source", "target", "scored_direction"]
    assert g["transfer/linear/eyes/lowrankgan/vectors"].shape == (2, k, d)
    assert g["transfer/linear/status"][:].tolist() == [1] * n
    assert g["transfer/linear/targets/eyes_mask/area_in"].shape == (n,)
    assert g["transfer/linear/targets/eyes_mask/mean_energy"].shape == (n,)
    assert sorted(k for k, _ in g["transfer/linear/eyes/lowrankgan/on"].groups()) == ["eyes", "eyes_mask"]
    assert sorted(k for k, _ in g["transfer/linear/eyes_mask/lowrankgan/on"].groups()) == ["eyes_mask"]
    r = g["transfer/realized/eyes/jacobian_svd/on/eyes/energy_in"]
    assert r.shape == (6, k, 1, 2) and list(r.metadata.dimension_names) == ["pair", "scored_direction", "strength", "sign"]
    assert g["transfer/similarity/eyes/lowrankgan/similarity"].shape == (6, 6)
    attrs = g["transfer/linear/eyes/lowrankgan"].attrs
    assert attrs["method"] == "lowrankgan" and attrs["param_hash"]


def test_linearized_scores_equal_direct_computation(small):
    spec, store, _ = small
    g = store.group
    k = 4
    for region, label in (("eyes", "lowrankgan"), ("eyes", "jacobian_svd"), ("eyes_mask", "lowrankgan")):
        scored = ["eyes", "eyes_mask"] if region == "eyes" else ["eyes_mask"]
        carry = g[f"transfer/linear/{region}/{label}/carrying"][...]
        for si, s in enumerate([1, 5]):
            V = g[f"directions/{region}/{label}/vectors"][s].astype(np.float64)
            Ms = g[f"regions/{region}/gram_in"][s].astype(np.float64)
            np.testing.assert_array_equal(carry[si], carrying(V, Ms)[:k])
            for sc in scored:
                loc = g[f"transfer/linear/{region}/{label}/on/{sc}/locality"][si]
                e_in = g[f"transfer/linear/{region}/{label}/on/{sc}/energy_in"][si]
                a_in = g[f"transfer/linear/targets/{sc}/area_in"][:]
                a_out = g[f"transfer/linear/targets/{sc}/area_out"][:]
                for t in (0, 5, 11):
                    gi = g[f"regions/{sc}/gram_in"][t].astype(np.float64)
                    go = g[f"regions/{sc}/gram_out"][t].astype(np.float64)
                    # the share of the first-order change inside the region: ΣR·vᵀM_R v / (ΣR·vᵀM_R v + ΣB·vᵀM_B v)
                    t_in = a_in[t] * np.einsum("kd,de,ke->k", V[:k], gi, V[:k])
                    t_out = a_out[t] * np.einsum("kd,de,ke->k", V[:k], go, V[:k])
                    np.testing.assert_allclose(loc[t], t_in / (t_in + t_out), rtol=2e-5, atol=1e-6, equal_nan=True)
                    np.testing.assert_allclose(e_in[t], np.einsum("kd,de,ke->k", V[:k], gi, V[:k]), rtol=2e-5,
                                               atol=1e-9, equal_nan=True)
    area = g["transfer/linear/targets/eyes_mask/area_in"][:]
    np.testing.assert_allclose(area, g["regions/eyes_mask/mask"][:].sum(axis=(1, 2)), rtol=1e-5)
    gi, go = g["regions/eyes_mask/gram_in"][:].astype(np.float64), g["regions/eyes_mask/gram_out"][:].astype(np.float64)
    np.testing.assert_allclose(g["transfer/linear/targets/eyes_mask/mean_energy"][:],
                               (np.trace(gi, axis1=1, axis2=2) + np.trace(go, axis1=1, axis2=2)) / 64, rtol=1e-5)


def test_realized_matches_linearized_at_small_alpha(small):
    _, store, _ = small
    from lrgan_dist import analysis

    rz = analysis.load_realized(store.uri)
    assert not rz.empty and np.allclose(rz["strength"].unique(), [0.05])
    c = rz[rz["carrying"]]
    assert (c["locality"] - c["linear_locality"]).abs().median() < 0.02


def test_rerun_computes_nothing(small, ray):
    from lrgan_dist.pipeline.stages.transfer import run_transfer

    spec, store, _ = small
    key = "transfer/linear/eyes/jacobian_svd/on/eyes_mask/locality"
    before = store.group[key][...]
    rep = run_transfer(spec, store, ray, show_progress=False)
    assert rep["linear"] == {**rep["linear"], "reset": False, "units": 0}
    assert rep["realized"]["units"] == 0 and rep["realized"]["reset"] is False
    assert rep["similarity"]["groups"] == 0
    np.testing.assert_array_equal(store.group[key][...], before)


def test_linear_unit_runs_without_ray_and_is_idempotent(small):
    from lrgan_dist.pipeline.stages.transfer import linear_unit

    _, store, _ = small
    key = "transfer/linear/eyes/lowrankgan/on/eyes/energy_out"
    before = store.group[key][...]
    out = linear_unit(store.uri, (4, 8))
    assert out["targets"] == 4
    np.testing.assert_array_equal(store.group[key][...], before)


def test_resume_recomputes_only_lost_chunks(small, ray):
    from lrgan_dist.pipeline.stages.transfer import run_transfer

    spec, store, _ = small
    g = store.group
    lkey = "transfer/linear/eyes/lowrankgan/on/eyes_mask/locality"
    rkey = "transfer/realized/eyes_mask/lowrankgan/on/eyes_mask/energy_in"
    lin0, real0 = g[lkey][...], g[rkey][...]
    g[lkey][:, 8:12, :] = np.nan  # a lost chunk and its status
    g["transfer/linear/status"][8:12] = 0
    g["transfer/realized/status"][0:4] = 0
    rep = run_transfer(spec, store, ray, show_progress=False)
    assert rep["linear"]["units"] == 1 and not rep["linear"]["reset"]
    assert rep["realized"]["units"] == 1 and not rep["realized"]["reset"]
    np.testing.assert_array_equal(g[lkey][...], lin0)
    np.testing.assert_allclose(g[rkey][...], real0, rtol=1e-6, equal_nan=True)


def test_missing_factorize_results_are_refused(small):
    from lrgan_dist.pipeline.stages.transfer import plan_transfer

    spec, store, _ = small
    raw = spec.to_dict()
    raw["methods"]["resefa"] = {"method": "resefa"}
    other = parse_spec(raw)
    with pytest.raises(StoreError, match="factorize"):
        plan_transfer(other, store)


def test_config_change_rebuilds(small, ray):
    from lrgan_dist.pipeline.stages.transfer import run_transfer

    spec, store, _ = small
    raw = spec.to_dict()
    raw["transfer"].update({"directions": 3, "realized_pairs": 0})
    other = parse_spec(raw)
    rep = run_transfer(other, store, ray, show_progress=False)
    assert rep["linear"]["reset"] and rep["realized"]["reset"] and rep["realized"]["pairs"] == 0
    assert store.group["transfer/linear/eyes/lowrankgan/on/eyes/locality"].shape == (2, 16, 3)
    json.dumps(rep, allow_nan=False)
    from lrgan_dist import analysis

    assert analysis.load_realized(store.uri).empty
    df = analysis.load_transfer(store.uri)
    assert len(df) > 0 and not df["realized"].any() and df["realized_locality"].isna().all()
    assert df["direction"].max() <= 2


def test_spec_validation_of_transfer_fields():
    base = json.loads(json.dumps(STUDY_SPEC))
    base["store"]["uri"] = "unused.zarr"
    cases = [({"score_on": {"eyes": "nose"}}, "transfer.score_on.eyes"),
             ({"score_on": {"mouth": "eyes"}}, "transfer.score_on.mouth"),
             ({"score_on": {"eyes": []}}, "transfer.score_on.eyes"),
             ({"strengths": [0.0]}, "transfer.strengths"),
             ({"similarity_samples": [3]}, "transfer.similarity_samples"),
             ({"regions": ["nose"]}, "transfer.regions"),
             ({"methods": ["resefa"]}, "transfer.methods"),
             ({"carry_frac": 0}, "transfer.carry_frac"),
             ({"realized_dtype": "float16"}, "transfer.realized_dtype")]
    for extra, field in cases:
        raw = json.loads(json.dumps(base))
        raw["transfer"].update(extra)
        with pytest.raises(SpecError) as exc:
            parse_spec(raw)
        assert exc.value.field == field, (extra, str(exc.value))
    raw = json.loads(json.dumps(base))
    raw["transfer"].update({"similarity_samples": [0, 4, 9], "regions": ["eyes"], "methods": ["lrg_lo"]})
    t = parse_spec(raw).transfer
    assert t.similarity_samples == (0, 4, 9) and t.regions == ("eyes",) and t.score_on == {"eyes": ["eyes", "eyes_mask"]}


# ----------------------------------------------------------------------------- acceptance (study store)


def _realized_cross(rz, region, scored):
    return rz[(rz["region"] == region) & (rz["scored_on"] == scored) & ~rz["self_pair"]]


@pytest.mark.slow
def test_lowrankgan_eye_directions_stay_local_on_64_other_samples(study):
    """Acceptance: the carrying LowRankGAN eye directions of one sample keep mean realized
    locality ≥ 0.9 on ≥ 64 other samples scored with their own ground-truth masks (faces at
    other positions included); jacobian_svd's top directions (as many) score lower on the
    same pairs. Directions from the ground-truth mask; those from the loose box are scored
    on the targets' masks too and must beat jacobian_svd from the same box."""
    from lrgan_dist import analysis

    spec, uri, _ = study
    rz = analysis.load_realized(uri)
    alpha = rz["strength"].abs().min()
    rz = rz[rz["strength"] == alpha]
    store = Store.open(uri)
    masks = store.group["regions/eyes_mask/mask"][:]
    yy, xx = np.mgrid[: masks.shape[1], : masks.shape[2]]
    cy = (masks * yy).sum(axis=(1, 2)) / masks.sum(axis=(1, 2))
    cx = (masks * xx).sum(axis=(1, 2)) / masks.sum(axis=(1, 2))
    for source in (0, 1):
        for region in ("eyes_mask", "eyes"):
            r = _realized_cross(rz, region, "eyes_mask")
            r = r[r["source"] == source]
            lrg = r[(r["method"] == "lowrankgan") & r["carrying"]]
            targets = np.unique(lrg["target"])
            assert targets.size >= 64
            shift = np.hypot(cy[targets] - cy[source], cx[targets] - cx[source])
            assert shift.max() > 2.0  # eyes at other positions (analysis-grid pixels)
            m = lrg["direction"].nunique()
            assert m >= 4  # at least the eye subspace's dimension
            svd = r[(r["method"] == "jacobian_svd") & (r["direction"] < m)]
            assert set(svd["target"]) == set(lrg["target"])  # the same pairs
            lrg_loc, svd_loc = float(lrg["locality"].mean()), float(svd["locality"].mean())
            if region == "eyes_mask":
                # The acceptance claim is on the per-pixel ratio e_in / (e_in + e_out) (masked
                # energies per unit area), the metric it was stated in; `locality` is now the
                # share of the change inside the mask, which a small mask caps lower
                # (per-pixel 0.99 on a 1:15 area ratio is a share of ~0.87).
                e_in = lrg[["energy_in_minus", "energy_in_plus"]].mean(axis=1)
                e_out = lrg[["energy_out_minus", "energy_out_plus"]].mean(axis=1)
                per_pixel = float((e_in / (e_in + e_out)).mean())
                assert per_pixel >= 0.9, (source, per_pixel, lrg_loc)
                assert svd_loc < lrg_loc - 0.1, (source, lrg_loc, svd_loc)
            else:
                assert svd_loc < lrg_loc, (source, lrg_loc, svd_loc)


@pytest.mark.slow
def test_linearized_and_realized_locality_agree_at_small_alpha(study):
    from lrgan_dist import analysis

    _, uri, _ = study
    agr = analysis.realized_agreement(analysis.load_realized(uri))
    pooled = agr[agr["region"] == "all"].sort_values("strength")
    small = pooled.iloc[0]
    assert small["strength"] == pytest.approx(0.02) and small["n"] > 500
    assert small["spearman"] >= 0.8, pooled


@pytest.mark.slow
def test_study_similarity_matrix(study):
    from lrgan_dist import analysis

    _, uri, _ = study
    sim = analysis.load_similarity(uri, "eyes_mask", "lowrankgan")
    m = sim["similarity"].to_numpy()
    assert m.shape == (24, 24) and sorted(sim["order"].tolist()) == list(range(24))
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-5)
    np.testing.assert_allclose(m, m.T, atol=1e-5)
    assert np.nanmin(m) >= 0.0 and np.nanmax(m) <= 1.0 + 1e-6
    # With the ground-truth mask the carrying subspaces (≤ ~11 dims) share the 4-dim eye
    # subspace at every sample; with the fixed box they also pick up what the moving face
    # brings into the box, which differs from sample to sample.
    off = ~np.eye(24, dtype=bool)
    assert m[off].min() > 0.35
    box = analysis.load_similarity(uri, "eyes", "lowrankgan")["similarity"].to_numpy()
    assert box[off].mean() < m[off].mean()
