"""Figures of the cross-image study (matplotlib, Agg backend; every function returns a Figure).

* :func:`plot_transfer_heatmap` — source × target mean locality of carrying directions;
* :func:`plot_locality_distributions` — cross-image locality by method (and scoring region),
  self-pair means marked;
* :func:`plot_similarity_matrix` — sample × sample subspace similarity in clustering order;
* :func:`plot_lambda_sweep` — rank and cross-image locality against λ;
* :func:`plot_realized_vs_linear` — realized against linearized locality per strength;
* :func:`fig_to_png` — PNG bytes (for embedding as base64 in HTML).
Edit grids are rendered by :func:`lrgan_dist.apply.edit.edit_grid`.
"""
from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lrgan_dist.analysis.summaries import per_target_locality  # noqa: E402

__all__ = ["fig_to_png", "plot_transfer_heatmap", "plot_locality_distributions", "plot_similarity_matrix",
           "plot_lambda_sweep", "plot_realized_vs_linear"]


def fig_to_png(fig: Any, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def plot_transfer_heatmap(df: pd.DataFrame, region: str, method: str, scored_on: str | None = None) -> Any:
    mat = per_target_locality(df, region, method, scored_on)
    fig, ax = plt.subplots(figsize=(min(12, 2 + 0.12 * max(1, mat.shape[1])), min(6, 1.2 + 0.25 * max(1, mat.shape[0]))))
    if mat.size:
        im = ax.imshow(mat.to_numpy(dtype=float), aspect="auto", vmin=0.0, vmax=1.0, cmap="viridis",
                       interpolation="nearest")
        fig.colorbar(im, ax=ax, label="locality (carrying directions, mean)")
        ax.set_yticks(range(mat.shape[0]), [str(i) for i in mat.index], fontsize=7)
        step = max(1, mat.shape[1] // 16)
        ax.set_xticks(range(0, mat.shape[1], step), [str(c) for c in mat.columns[::step]], fontsize=7)
    ax.set_xlabel("target sample")
    ax.set_ylabel("source sample")
    ax.set_title(f"{region} / {method}" + (f" scored on {scored_on}" if scored_on else ""), fontsize=9)
    return fig


def plot_locality_distributions(df: pd.DataFrame) -> Any:
    c = df[df["carrying"] & ~df["inert"]]
    keys = c.groupby(["region", "method", "scored_on"], observed=True).size().index.tolist()
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(keys) + 2), 3.6))
    data, labels, selfm = [], [], []
    for key in keys:
        g = c[(c["region"] == key[0]) & (c["method"] == key[1]) & (c["scored_on"] == key[2])]
        cross = g.loc[~g["self_pair"], "locality"].dropna().to_numpy(dtype=float)
        data.append(cross if cross.size else np.array([np.nan]))
        selfm.append(float(g.loc[g["self_pair"], "locality"].mean()) if g["self_pair"].any() else np.nan)
        labels.append(f"{key[1]}\n{key[0]}→{key[2]}" if key[0] != key[2] else f"{key[1]}\n{key[0]}")
    if data:
        ax.boxplot(data, showfliers=False, whis=(5, 95))
        for i, d in enumerate(data):
            x = np.random.default_rng(i).uniform(-0.15, 0.15, d.size) + i + 1
            ax.plot(x, d, ".", ms=2, alpha=0.3, color="tab:blue")
        ax.plot(range(1, len(selfm) + 1), selfm, "r*", ms=9, label="self pairs (mean)")
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
        ax.legend(fontsize=7, loc="lower left")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("cross-image locality (linearized)")
    ax.set_title("locality of carrying directions at other samples", fontsize=9)
    return fig


def plot_similarity_matrix(sim: dict[str, Any], title: str = "", key: str = "similarity") -> Any:
    mat = sim[key]
    order = np.asarray(sim["order"])
    m = mat.to_numpy(dtype=float)[np.ix_(order, order)]
    labels = [str(mat.index[i]) for i in order]
    fig, ax = plt.subplots(figsize=(5, 4.3))
    im = ax.imshow(m, vmin=0.0, vmax=1.0 if key == "similarity" else None, cmap="magma", interpolation="nearest")
    fig.colorbar(im, ax=ax, label=key.replace("_", " "))
    step = max(1, len(labels) // 16)
    ax.set_xticks(range(0, len(labels), step), labels[::step], fontsize=6, rotation=90)
    ax.set_yticks(range(0, len(labels), step), labels[::step], fontsize=6)
    ax.set_title(title or "subspace similarity (clustering order)", fontsize=9)
    return fig


def plot_lambda_sweep(sweep: pd.DataFrame) -> Any:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for (region, scored), g in sweep.groupby(["region", "scored_on"], sort=True):
        g = g.sort_values("lam")
        lab = f"{region}" + (f"→{scored}" if scored != region else "")
        rank = g["mean_rank_R"] if "mean_rank_R" in g and g["mean_rank_R"].notna().all() else g["mean_rank"]
        a1.plot(g["lam"], rank, "o-", label=region)
        a2.plot(g["lam"], g["cross_locality"], "o-", label=f"{lab} (linearized)")
        if g["realized_cross_locality"].notna().any():
            a2.plot(g["lam"], g["realized_cross_locality"], "s--", label=f"{lab} (realized)")
    for a in (a1, a2):
        a.set_xscale("log")
        a.set_xlabel("λ")
        a.legend(fontsize=7)
    a1.set_ylabel("mean rank of L_R")
    a2.set_ylabel("cross-image locality")
    fig.suptitle("LowRankGAN λ sweep", fontsize=9)
    fig.tight_layout()
    return fig


def plot_realized_vs_linear(realized: pd.DataFrame) -> Any:
    r = realized[realized["carrying"] & ~realized["self_pair"] & ~realized["inert"]]
    alphas = sorted(r["strength"].unique())
    fig, axes = plt.subplots(1, max(1, len(alphas)), figsize=(4 * max(1, len(alphas)), 3.6), squeeze=False)
    for ax, a in zip(axes[0], alphas):
        g = r[r["strength"] == a]
        for key, h in g.groupby(["method", "scored_on"], observed=True):
            ax.plot(h["linear_locality"], h["locality"], ".", ms=3, alpha=0.6, label=f"{key[0]}→{key[1]}")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlabel("linearized locality")
        ax.set_ylabel("realized locality")
        ax.set_title(f"α = {a:g}", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig
