"""Issue 15: a λ grid in one spec (``lam: [..]`` → one result group per value) and the rank of a
result group as rows *and* the dimension they span."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lrgan_dist.core.methods import get_method
from lrgan_dist.core.methods.registry import grid_params
from lrgan_dist.spec import SpecError, parse_spec
from lrgan_dist.testing.cli import ROOT, cli, write_spec

MIN = {"regions": {"eyes": {"box": [0.3, 0.2, 0.5, 0.8]}}}


def _methods(methods: dict) -> list:
    return list(parse_spec({**MIN, "methods": methods}).methods)


def test_grid_equals_the_hand_written_entries_of_the_faces_job():
    """jobs/faces_dcgan.yaml writes its λ study by hand; the grid gives the same labels, parameters,
    parameter hashes (the result groups a store keys on) and stored spec."""
    faces = yaml.safe_load((ROOT / "jobs" / "faces_dcgan.yaml").read_text())["methods"]
    hand = {k: v for k, v in faces.items() if k.startswith("lowrankgan_lam")}
    assert sorted(hand) == ["lowrankgan_lam0.03", "lowrankgan_lam0.3"]
    grid = {"lowrankgan": {"lam": [0.03, 0.3], "tol": 1.0e-6, "max_iter": 1000, "samples": 64}}
    a, b = parse_spec({**MIN, "methods": grid}), parse_spec({**MIN, "methods": hand})
    assert a.methods == b.methods
    assert a.to_dict() == b.to_dict() and a.data_fingerprint() == b.data_fingerprint()
    hashes = [get_method(m.method, **m.params).param_hash() for m in a.methods]
    assert hashes == [get_method(m.method, **m.params).param_hash() for m in b.methods]
    assert len(set(hashes)) == 2
    # a stored spec (expanded) reads back to the same methods
    assert parse_spec(a.to_dict()).methods == a.methods


def test_grid_labels_values_and_order():
    ms = _methods({"lowrankgan": {"lam": [0.25, "1/60", None], "rank_tol": 1e-5}, "resefa": {}})
    assert [m.label for m in ms] == ["lowrankgan_lam0.25", "lowrankgan_lam0.016666666666666666", "lowrankgan_lamnull",
                                     "resefa"]
    assert [m.params["lam"] for m in ms[:3]] == [0.25, pytest.approx(1 / 60), None]
    assert all(m.method == "lowrankgan" and m.params["rank_tol"] == 1e-5 for m in ms[:3])
    # an own label with method: keeps its label as the prefix
    assert [m.label for m in _methods({"lrg": {"method": "lowrankgan", "lam": [0.1]}})] == ["lrg_lam0.1"]
    # two grid parameters: their product, suffixes in the spec's key order
    ms = _methods({"lowrankgan": {"relax": [0, 1], "lam": [0.1, 0.3]}})
    assert [m.label for m in ms] == ["lowrankgan_relax0_lam0.1", "lowrankgan_relax0_lam0.3",
                                     "lowrankgan_relax1_lam0.1", "lowrankgan_relax1_lam0.3"]
    # the labels never take the form of a changed-parameter group (label@hash8)
    assert not any("@" in m.label or "/" in m.label for m in ms)


def test_list_valued_parameters_are_not_grids():
    assert "layers" not in grid_params("sefa") and "lam" in grid_params("lowrankgan")
    (m,) = _methods({"sefa": {"layers": [0, 1]}})
    assert m.label == "sefa" and m.params["layers"] == [0, 1]


@pytest.mark.parametrize("methods, field, fragment", [
    ({"lowrankgan": {"lam": [0.03, -1]}}, "methods.lowrankgan.lam[1]", "positive number"),
    ({"lowrankgan": {"lam": [0.03, "much"]}}, "methods.lowrankgan.lam[1]", "'much'"),
    ({"lowrankgan": {"lam": [0.1, [0.2]]}}, "methods.lowrankgan.lam[1]", "expected one value"),
    ({"lowrankgan": {"lam": [0.1, "1/10"]}}, "methods.lowrankgan.lam[1]", "twice"),
    ({"lowrankgan": {"lam": []}}, "methods.lowrankgan.lam", "empty list"),
    ({"lowrankgan": {"lam": [0.1, 0.3], "tol": -1}}, "methods.lowrankgan", "tol"),
    ({"lowrankgan": {"lam": [0.1, 0.3]}, "lowrankgan_lam0.3": {"method": "lowrankgan"}},
     "methods.lowrankgan_lam0.3", "also gives"),
])
def test_grid_errors_name_the_element(methods, field, fragment):
    with pytest.raises(SpecError) as e:
        parse_spec({**MIN, "methods": methods})
    assert e.value.field == field, str(e.value)
    assert fragment in str(e.value)
    assert len(str(e.value).splitlines()) == 1  # one error, reported once (not once per grid value)


def test_grid_errors_of_two_methods_are_all_reported():
    with pytest.raises(SpecError) as e:
        parse_spec({**MIN, "methods": {"lowrankgan": {"lam": [0.1, 0]}, "lrg": {"method": "lowrankgan", "lam": [0.2, "x"]}}})
    assert [x.field for x in e.value.errors] == ["methods.lowrankgan.lam[1]", "methods.lrg.lam[1]"]


def test_cli_validate_shows_the_expanded_groups(tmp_path):
    p = write_spec(tmp_path / "job.yaml", methods={"lowrankgan": {"lam": [0.1, 0.25]}})
    out = cli("validate", str(p), check=True)
    assert list(json.loads(out.stdout)["spec"]["methods"]) == ["lowrankgan_lam0.1", "lowrankgan_lam0.25"]
    bad = write_spec(tmp_path / "bad.yaml", methods={"lowrankgan": {"lam": [0.1, -2]}})
    r = cli("validate", str(bad))
    assert r.returncode == 2 and "methods.lowrankgan.lam[1]" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_span_dimension_counts_dimensions_not_rows():
    from lrgan_dist.core.subspaces import span_dimension

    rng = np.random.default_rng(0)
    d = 16
    basis = np.linalg.qr(rng.standard_normal((d, 3)))[0].T  # 3 orthonormal rows
    rows = rng.standard_normal((7, 3)) @ basis  # 7 rows in a 3-dimensional subspace
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    V = np.full((3, d, d), np.nan, dtype=np.float32)
    V[0, :7] = rows  # float32: rounding ~1e-7 must not count as a dimension
    V[1, :2] = basis[:2]
    V[1, 2] = np.cos(0.01) * basis[0] + np.sin(0.01) * basis[2]  # 0.6° apart from row 0: a dimension
    # sample 2: no direction at all
    assert span_dimension(V).tolist() == [3, 3, 0]
    assert span_dimension(V[:0]).tolist() == []


@pytest.fixture(scope="module")
def grid_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lamgrid")
    p = write_spec(tmp / "job.yaml", samples={"count": 8, "seed": 0}, regions={"eyes_mask": {"part": "eyes"}},
                   methods={"lowrankgan": {"lam": [0.1, 0.25], "rank_tol": 1e-5, "solver": "ialm"}, "jacobian_svd": {}})
    r = cli("submit", str(p), "--stages", "jacobians,factorize", "--no-progress", "--json", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout), str(tmp / "store.zarr")


def test_grid_store_is_one_lambda_sweep_with_rows_and_span(grid_store):
    from lrgan_dist.analysis.loaders import load_groups
    from lrgan_dist.analysis.summaries import lambda_sweep
    from lrgan_dist.store.zarrstore import DONE, Store

    report, uri = grid_store
    groups = load_groups(uri)
    sweep = lambda_sweep(pd.DataFrame(columns=["method"]), groups)  # no transfer table: the groups alone
    print(sweep[["region", "method", "lam", "mean_rank", "mean_span", "mean_rank_R", "mean_rank_B"]])
    # the two expanded groups are one sweep: two λ for the region (the report draws the figure)
    assert sweep["method"].tolist() == ["lowrankgan_lam0.1", "lowrankgan_lam0.25"]
    assert sweep.groupby("region")["lam"].nunique().max() == 2
    st = Store.open(uri)
    rows = {r["method"]: r for r in report["summary"]["directions"]}
    for _, g in groups.iterrows():
        grp = st.group[f"directions/{g['region']}/{g['method']}"]
        done = np.asarray(grp["status"][:]) == DONE
        assert done.all()
        span = np.asarray(grp["diagnostics/span"][:])
        rank = np.asarray(grp["rank"][:])
        V = np.asarray(grp["vectors"][:]).astype(np.float64)
        for i in range(len(span)):  # independently: numpy's SVD of the stored unit rows
            X = V[i, : rank[i]]
            s = np.linalg.svd(X, compute_uv=False) if rank[i] else np.zeros(1)
            assert span[i] == int((s > 1e-6 * s.max()).sum())
        assert (span <= rank).all()
        assert g["mean_span"] == pytest.approx(span.mean()) and g["mean_rank"] == pytest.approx(rank.mean())
        assert rows[g["method"]]["mean_span"] == pytest.approx(span.mean())  # the submit summary's column
        if g["method"] == "jacobian_svd":  # orthonormal eigenvectors: every row is a dimension
            assert (span == rank).all()
    attrs = json.loads((Path(uri) / "directions/eyes_mask/lowrankgan_lam0.1/diagnostics/span/zarr.json").read_text())
    assert "dimension of the span" in attrs["attributes"]["description"]


def test_summary_table_shows_rank_and_span():
    from lrgan_dist.analysis.summary import format_summary

    report = {"store": "s", "summary": {"samples": {"total": 4, "done": 4, "failed": 0, "pending": 0},
                                        "directions": [{"region": "eyes", "method": "lowrankgan", "done": 4,
                                                        "mean_rank": 7.5, "mean_span": 4.0, "empty_share": 0.0}]}}
    lines = format_summary(report).splitlines()
    hdr = next(ln for ln in lines if ln.startswith("region"))
    row = next(ln for ln in lines if ln.startswith("eyes"))
    assert hdr.split()[3:5] == ["rank", "span"] and row.split()[3:5] == ["7.5", "4.0"]
