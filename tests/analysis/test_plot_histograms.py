"""plot_histograms: side-by-side hatched bars for few bins, one step outline per series beyond
MAX_BARS; the drawn counts equal numpy's histogram either way."""
from __future__ import annotations

import numpy as np
from matplotlib.patches import Rectangle, StepPatch

from lrgan_dist.analysis.plots import MAX_BARS, fig_to_png, plot_histograms


def _panel(values):
    return [{"title": "t", "xlabel": "rank", "series": [(f"m{i}", v) for i, v in enumerate(values)]}]


def test_few_bins_are_bars_with_the_counts():
    vals = [np.array([0, 1, 1, 3]), np.array([1, 2, 2, 2, np.nan])]
    fig = plot_histograms(_panel(vals), "x")
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == 2 * 4  # ranks 0..3, two series side by side
    heights = np.array([b.get_height() for b in bars]).reshape(2, 4)
    assert heights.tolist() == [[1, 2, 0, 1], [0, 1, 3, 0]]
    assert fig_to_png(fig)[:4] == b"\x89PNG"


def test_many_bins_are_one_outline_per_series_with_the_counts():
    rng = np.random.default_rng(0)
    vals = [rng.integers(0, 100, 64) for _ in range(3)]
    assert 100 * 3 > MAX_BARS
    fig = plot_histograms(_panel(vals), "x")
    ax = fig.axes[0]
    steps = [p for p in ax.patches if isinstance(p, StepPatch)]
    assert len(steps) == 3 and not [p for p in ax.patches if isinstance(p, Rectangle)]
    lo, hi = min(int(v.min()) for v in vals), max(int(v.max()) for v in vals)
    bins = np.arange(lo, hi + 2) - 0.5
    for s, v in zip(steps, vals):
        assert np.array_equal(s.get_data().values, np.histogram(v, bins=bins)[0])
    fig_to_png(fig)
