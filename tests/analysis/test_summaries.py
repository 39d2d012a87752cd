"""The report library's summaries without a store (issue 18 items 2 and 4, issue 12 item 2)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lrgan_dist.analysis.summaries import lambda_sweep, summarize_transfer
from lrgan_dist.analysis.summary import format_summary


@pytest.mark.parametrize("module", ["lrgan_dist.analysis.loaders", "lrgan_dist.analysis.summaries",
                                    "lrgan_dist.analysis", "lrgan_dist.store.zarrstore"])
def test_loading_a_store_into_pandas_does_not_import_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]"
    subprocess.run([sys.executable, "-c", code], check=True)


def _rows(method: str, locality: list[float], *, self_pair: list[bool], strength: list[float],
          baseline: float = 0.3, region: str = "eyes") -> pd.DataFrame:
    n = len(locality)
    return pd.DataFrame({
        "source": np.zeros(n, dtype=np.int32), "target": np.arange(n, dtype=np.int32) * np.array(
            [0 if s else 1 for s in self_pair]),
        "region": region, "method": method, "method_name": "lowrankgan", "scored_on": region,
        "direction": np.arange(n, dtype=np.int16), "self_pair": self_pair, "carrying": True, "inert": False,
        "source_share": 1.0, "energy_in": 1.0, "energy_out": 1.0, "total_in": 1.0, "total_out": 1.0,
        "locality": locality, "locality_per_pixel": [min(1.0, x + 0.2) for x in locality], "baseline": baseline,
        "strength": strength, "realized": False, "realized_locality": np.nan})


def test_summary_reports_baseline_and_strength_beside_locality():
    df = _rows("lowrankgan", [0.9, 0.7, 0.5, 0.6], self_pair=[True, False, False, False],
               strength=[0.01, 0.02, 0.03, 0.5], baseline=0.4)
    s = summarize_transfer(df).iloc[0]
    assert s["self_locality"] == pytest.approx(0.9) and s["cross_locality"] == pytest.approx(0.6)
    assert s["self_baseline"] == pytest.approx(0.4) and s["cross_baseline"] == pytest.approx(0.4)
    assert s["self_strength"] == pytest.approx(0.01) and s["cross_strength"] == pytest.approx(0.03)
    assert s["cross_locality_per_pixel"] == pytest.approx(0.8)


def _groups(lams: list[float], empty: list[float], rank_b0: list[float]) -> pd.DataFrame:
    labels = [f"lrg_{i}" for i in range(len(lams))]
    return pd.DataFrame({"region": "eyes", "method": labels, "method_name": "lowrankgan", "param_hash": "h",
                         "params": "{}", "lam": lams, "done": 10,
                         "mean_rank": [0.0 if e == 1 else 3.0 for e in empty], "median_rank": 0.0,
                         "empty_share": empty, "mean_rank_R": 2.0, "mean_rank_B": [0.0 if z else 5.0 for z in rank_b0],
                         "rank_B_zero_share": rank_b0}).astype({"region": "category", "method": "category"})


def test_lambda_sweep_keeps_a_lambda_without_directions():
    """Issue 18: λ = 1/60 gave no direction on any sample: it must appear with its empty share."""
    groups = _groups([1 / 60, 0.125, 0.25], empty=[1.0, 0.1, 0.0], rank_b0=[0.0, 0.0, 0.4])
    df = pd.concat([_rows("lrg_1", [0.9, 0.6], self_pair=[True, False], strength=[1.0, 2.0]),
                    _rows("lrg_2", [0.8, 0.5], self_pair=[True, False], strength=[3.0, 4.0])], ignore_index=True)
    sw = lambda_sweep(df, groups)
    assert sw["lam"].round(4).tolist() == [round(1 / 60, 4), 0.125, 0.25]
    empty = sw.iloc[0]
    assert empty["empty_share"] == 1.0 and np.isnan(empty["cross_locality"]) and empty["method"] == "lrg_0"
    assert sw["cross_locality"].iloc[1:].tolist() == pytest.approx([0.6, 0.5])
    assert sw["cross_strength"].iloc[1:].tolist() == pytest.approx([2.0, 4.0])
    # rank(L_B) = 0 on some samples: LowRankGAN is unprojected jacobian_svd there — flagged
    assert sw["degenerate"].tolist() == [False, False, True]
    # and with no transfer table at all every λ is still listed
    assert len(lambda_sweep(df.iloc[:0], groups)) == 3


def test_cli_summary_prints_none_share_baseline_and_strength():
    report = {"store": "s", "summary": {"samples": {"total": 4, "done": 4, "failed": 0, "pending": 0},
                                        "directions": [{"region": "eyes", "method": "lowrankgan", "done": 4,
                                                        "mean_rank": 1.5, "empty_share": 0.25, "mean_carrying": 1.5,
                                                        "self_locality": 0.91, "baseline": 0.123,
                                                        "strength": 0.0035}]},
              "stages": {"transfer": {"summary": {"sources": 2, "targets": 4, "groups": [
                  {"region": "eyes", "method": "lowrankgan", "scored_on": "eyes", "self_locality": 0.9,
                   "cross_locality": 0.8, "realized_cross_locality": None}]}}}}
    text = format_summary(report)
    print(text)
    assert "random" in text and "0.123" in text and "25%" in text and "0.0035x" in text
    line = [ln for ln in text.splitlines() if ln.startswith("eyes") and "0.800" in ln][0]
    assert "0.123" in line  # the baseline of the scored region beside the cross locality
