"""analysis/: loaders, summaries and the report on the shared study store (test_transfer_stage)."""
from __future__ import annotations

import base64
import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from lrgan_dist import analysis
from lrgan_dist.testing.stores import build_study_store


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return build_study_store(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def report(study, tmp_path_factory):
    _, uri, _ = study
    out = tmp_path_factory.mktemp("report")
    return out, analysis.write_report(uri, out)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tags: dict[str, int] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))

    def handle_endtag(self, tag):
        self.tags[f"/{tag}"] = self.tags.get(f"/{tag}", 0) + 1

    def handle_data(self, data):
        self.text.append(data)


def test_report_prints_baseline_and_strength_beside_locality(report):
    out, res = report
    md = (out / "report.md").read_text()
    assert "baseline" in md and "strength" in md and "locality_per_pixel" in md
    g = res["headline"]["groups"][0]
    assert {"self_baseline", "cross_baseline", "self_strength", "cross_strength"} <= set(g)


def test_report_files_exist(report):
    out, res = report
    for name in ("report.md", "report.html", "transfer.parquet", "transfer.csv", "realized.parquet", "summary.csv",
                 "agreement.csv", "matched.csv", "lambda_sweep.csv", "box_vs_mask.csv", "groups.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert res["paths"][name] == str(out / name)
    json.dumps(res)  # JSON-able
    md = (out / "report.md").read_text()
    for fig in ("lambda_sweep", "locality_distributions", "realized_vs_linear", "similarity_0", "heatmap_0", "gallery",
                "spectra_0", "ranks_0"):
        assert f"figures/{fig}.png" in md and (out / "figures" / f"{fig}.png").is_file()


def test_report_html_parses_with_embedded_images(report):
    out, _ = report
    p = _Collector()
    p.feed((out / "report.html").read_text())
    p.close()
    assert p.tags.get("html") == 1 and p.tags.get("/html") == 1 and p.tags.get("body") == 1
    assert p.tags.get("table", 0) >= 5 and p.tags.get("table") == p.tags.get("/table")
    assert len(p.images) >= 6
    for src in p.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    text = " ".join(p.text)
    assert "λ sweep" in text and "jacobian_svd" in text and "Per-pixel normalization" in text


def test_transfer_parquet_round_trips_with_documented_dtypes(report, study):
    out, _ = report
    df = pd.read_parquet(out / "transfer.parquet")
    assert list(df.columns) == list(analysis.TRANSFER_COLUMNS)
    assert {c: str(t) for c, t in df.dtypes.items()} == analysis.TRANSFER_COLUMNS
    pd.testing.assert_frame_equal(df, analysis.load_transfer(study[1]))
    rz = pd.read_parquet(out / "realized.parquet")
    assert {c: str(t) for c, t in rz.dtypes.items()} == analysis.REALIZED_COLUMNS
    # 2 sources × 72 targets, box directions scored on two regions
    assert set(df["source"]) == {0, 1} and df["target"].nunique() == 72
    assert set(map(str, df["scored_on"].unique())) == {"eyes", "eyes_mask"}
    assert df["self_pair"].sum() > 0 and df["realized"].all()


def test_report_shows_lowrankgan_beats_jacobian_svd(report):
    _, res = report
    rows = [r for r in res["headline"]["matched"] if r["region"] == "eyes_mask" and r["scored_on"] == "eyes_mask"]
    by = {r["method"]: r for r in rows}
    print({m: (r["cross_locality"], r["realized_cross_locality"]) for m, r in by.items()})
    # locality is the share of the change inside the (small) eye mask since issue 18: the per-pixel
    # ratio read ≥ 0.99 here, the share ≈ 0.9 — far above a random direction's (see the summary)
    assert by["lowrankgan"]["realized_cross_locality"] >= 0.85
    assert by["jacobian_svd"]["realized_cross_locality"] < by["lowrankgan"]["realized_cross_locality"] - 0.1
    assert by["jacobian_svd"]["pairs"] == by["lowrankgan"]["pairs"]
    assert res["headline"]["spearman_smallest_alpha"]["spearman"] >= 0.8


def test_lambda_sweep(report, study):
    out, _ = report
    sweep = pd.read_csv(out / "lambda_sweep.csv")
    groups = analysis.load_groups(study[1])
    lg = groups[groups["method_name"] == "lowrankgan"].set_index(["region", "method"])
    assert lg.loc[("eyes", "lrg_lo"), "lam"] == pytest.approx(0.05)
    assert lg.loc[("eyes", "lowrankgan"), "lam"] == pytest.approx(1 / 8)  # λ = 1/√d resolved
    assert json.loads(lg.loc[("eyes", "lrg_hi"), "params"]) == {"lam": 0.25, "solver": "ialm"}
    s = sweep[(sweep["region"] == "eyes_mask") & (sweep["scored_on"] == "eyes_mask")].sort_values("lam")
    assert s["lam"].round(4).tolist() == [0.05, 0.125, 0.25]
    assert s["mean_rank"].notna().all() and s["cross_locality"].notna().all()
    assert s["mean_rank_R"].notna().all() and s["mean_rank_B"].notna().all()
    print(s[["lam", "mean_rank", "mean_rank_R", "mean_rank_B", "cross_locality"]])
    assert s["mean_rank_R"].is_monotonic_increasing  # larger λ, larger low-rank part
    # shares of the change inside the small eye mask (measured 0.49, 0.90, 1.00): above chance at every λ
    assert (s["realized_cross_locality"] > 0.4).all()
    assert (s["cross_locality"] > s["cross_baseline"]).all()
    assert {"empty_share", "rank_B_zero_share", "degenerate", "cross_strength"} <= set(sweep.columns)


def test_box_vs_mask_side_by_side(report):
    out, _ = report
    bvm = pd.read_csv(out / "box_vs_mask.csv")
    row = bvm[(bvm["box"] == "eyes") & (bvm["mask"] == "eyes_mask") & (bvm["method"] == "lowrankgan")].iloc[0]
    svd = bvm[(bvm["box"] == "eyes") & (bvm["method"] == "jacobian_svd")].iloc[0]
    assert row["samples"] == 24 and 0.0 < row["similarity_mean"] <= 1.0
    assert row["box_rank"] > 0 and row["mask_rank"] > 0
    assert row["mask_cross_on_mask"] > 0.85  # share of the change inside the mask (0.897 measured)
    # box directions scored on the targets' own masks: less local than the mask's, but
    # more local than the unprojected top eigenvectors of the same box
    assert svd["box_cross_on_mask"] < row["box_cross_on_mask"] <= row["mask_cross_on_mask"]
    assert np.isfinite(svd["similarity_mean"])


def test_loaders_and_summary(study):
    _, uri, _ = study
    s = analysis.load_samples(uri)
    assert len(s) == 72 and s["done"].all() and s["sample"].dtype == np.int32
    assert (s["area_eyes_mask"] > 0).all() and s["area_eyes"].nunique() == 1
    dirs = analysis.load_directions(uri, region="eyes_mask", method="lowrankgan", samples=range(8))
    assert set(dirs["sample"]) == set(range(8)) and dirs["carrying"].any()
    np.testing.assert_allclose(dirs.groupby("sample")["share"].max(), 1.0, rtol=1e-6)
    df = analysis.load_transfer(uri, region="eyes", method="lowrankgan", carrying_only=True)
    assert df["carrying"].all() and set(map(str, df["method"].unique())) == {"lowrankgan"}
    summ = analysis.summarize_transfer(analysis.load_transfer(uri))
    assert len(summ) == 4 * 3  # (eyes→eyes, eyes→eyes_mask, eyes_mask→eyes_mask) × 4 methods
    r = summ[(summ["region"] == "eyes_mask") & (summ["method"] == "lowrankgan")].iloc[0]
    # share of the change inside the target's eye mask (0.897 measured; the per-pixel ratio reads higher)
    assert r["cross_locality"] > 0.85 and abs(r["generalization_gap"]) < 0.15
    assert r["cross_locality_per_pixel"] >= r["cross_locality"]
    assert r["realized_pairs"] == 142  # 2 × 72 minus the 2 self pairs
    full = analysis.load_transfer(uri)
    c = full[full["carrying"]]
    # inert rows: ~no first-order change at the target, left out of the locality means
    # (with float32-noise directions dropped there may be none: then there is nothing to check)
    inert_e = (c["energy_in"] + c["energy_out"])[c["inert"]]
    print("inert carrying rows:", int(c["inert"].sum()), "of", len(c))
    assert inert_e.empty or inert_e.max() < 1e-3 * (c["energy_in"] + c["energy_out"]).median()
    assert 0.0 <= summ["inert_share"].min() and summ["inert_share"].max() < 0.5
    # issue 18: locality is the share of the change inside the region, beside its random baseline
    fin = full[np.isfinite(full["locality"])]
    share = fin["total_in"] / (fin["total_in"] + fin["total_out"])
    np.testing.assert_allclose(fin["locality"], share, rtol=1e-4, atol=1e-6)
    ppx = fin["energy_in"] / (fin["energy_in"] + fin["energy_out"])
    np.testing.assert_allclose(fin["locality_per_pixel"], ppx, rtol=1e-4, atol=1e-6)
    small = fin[fin["scored_on"] == "eyes_mask"]  # the eye mask is far smaller than the rest
    assert (small["locality"] <= small["locality_per_pixel"] + 1e-5).all()
    assert ((fin["baseline"] > 0) & (fin["baseline"] < 1)).all() and (fin["strength"] >= 0).all()
    assert r["cross_locality"] > r["cross_baseline"]
    assert np.isfinite(summ[["self_baseline", "cross_baseline", "self_strength", "cross_strength"]]).all().all()
    groups = analysis.load_groups(uri)
    assert ((groups["empty_share"] >= 0) & (groups["empty_share"] <= 1)).all()


def test_report_without_transfer_stage(study, tmp_path):
    _, uri, _ = study
    copy = tmp_path / "copy.zarr"
    shutil.copytree(uri, copy)
    shutil.rmtree(copy / "transfer")
    res = analysis.write_report(str(copy), tmp_path / "rep")
    assert (tmp_path / "rep" / "report.html").is_file()
    assert pd.read_parquet(tmp_path / "rep" / "transfer.parquet").empty
    assert "has not run" in (tmp_path / "rep" / "report.md").read_text()
    assert res["headline"]["groups"] == []
