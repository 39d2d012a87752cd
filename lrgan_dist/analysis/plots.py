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
    """PNG bytes; cropped to the drawn content (``bbox_inches="tight"``, a second draw) unless the
    figure was laid out to its content already (:func:`plot_mosaic` marks it ``exact_layout``).
    Image mosaics are written at zlib level 3 instead of the default 6: much faster to encode
    for a few per cent more bytes (line plots keep the default: nothing to gain there)."""
    buf = io.BytesIO()
    exact = bool(getattr(fig, "exact_layout", False))
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches=None if exact else "tight",
                pil_kwargs={"compress_level": 3} if exact else None)
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
        if "cross_baseline" in g and g["cross_baseline"].notna().any():
            a2.plot(g["lam"], g["cross_baseline"], ":", color="grey", label=f"{lab} (random direction)")
        if g["realized_cross_locality"].notna().any():
            a2.plot(g["lam"], g["realized_cross_locality"], "s--", label=f"{lab} (realized)")
    for a in (a1, a2):
        a.set_xscale("log")
        a.set_xlabel("λ")
        a.legend(fontsize=7)
    a1.set_ylabel("mean rank of L_R")
    a2.set_ylabel("cross-image locality (share)")
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


# ----------------------------------------------------------------------------- store views (issue 16)
# Every figure below: a title, axis labels with units, greyscale-readable colour maps
# (viridis / gray) and markers/line styles that differ without colour.

_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "x")


def outline(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Boundary pixels [H, W] bool of ``mask`` (grid h×w, values in [0, 1]) at preview size hw
    (nearest-neighbour upsampling, then the mask minus its 4-neighbour erosion)."""
    m = np.nan_to_num(np.asarray(mask, dtype=np.float64)) > 0.5
    H, W = hw
    ri = (np.arange(H) * m.shape[0] // H).clip(0, m.shape[0] - 1)
    ci = (np.arange(W) * m.shape[1] // W).clip(0, m.shape[1] - 1)
    u = m[np.ix_(ri, ci)]
    p = np.pad(u, 1, constant_values=False)
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:] & u
    return u & ~inner


def paint_outline(img: np.ndarray, edge: np.ndarray, colour: tuple[int, int, int] = (255, 0, 255)) -> np.ndarray:
    out = np.array(img, copy=True)
    out[edge] = colour
    return out


def heat_rgb(delta_u8: np.ndarray) -> np.ndarray:
    """uint8 [H, W] → uint8 [H, W, 3] through viridis (monotone luminance: reads in greyscale)."""
    rgba = plt.get_cmap("viridis")(np.asarray(delta_u8, dtype=np.float64) / 255.0)
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def plot_mosaic(tiles: list[list[np.ndarray]], row_labels: list[str], col_labels: list[str], title: str,
                tile_inches: float = 0.85, xlabel: str = "", ylabel: str = "", block: int = 0) -> Any:
    """One image built from equal-size uint8 RGB tiles (rows × cols), labelled on the axes.

    ``block`` > 0 leaves a wider white gap after every ``block`` columns (column groups, e.g.
    one per direction). One ``imshow`` for the whole grid: cost independent of the number of tiles."""
    R, C = len(tiles), max(len(r) for r in tiles)
    h, w = tiles[0][0].shape[:2]
    gap = max(1, h // 16)
    bgap = 4 * gap if block > 0 else 0
    x0 = [j * (w + gap) + (j // block if block > 0 else 0) * bgap for j in range(C)]
    canvas = np.full((R * (h + gap) - gap, x0[-1] + w, 3), 255, dtype=np.uint8)
    for i, row in enumerate(tiles):
        for j, t in enumerate(row):
            canvas[i * (h + gap): i * (h + gap) + h, x0[j]: x0[j] + w] = t
    # margins in inches from the labels (7 pt ≈ 0.055 in per character), so that the PNG needs no
    # second, cropping draw: left = row labels + y label, top = title + x label + column labels
    chars = max((len(line) for lab in row_labels for line in lab.split("\n")), default=0)
    left, top, pad = 0.35 + 0.055 * chars, 0.95 if xlabel else 0.75, 0.08
    aw, ah = tile_inches * canvas.shape[1] / (w + gap), tile_inches * canvas.shape[0] / (h + gap)
    fw, fh = left + aw + pad, top + ah + pad
    fig = plt.figure(figsize=(fw, fh))
    ax = fig.add_axes((left / fw, pad / fh, aw / fw, ah / fh))
    setattr(fig, "exact_layout", True)  # read by fig_to_png
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([x + w / 2 for x in x0], col_labels, fontsize=7)
    ax.set_yticks([i * (h + gap) + h / 2 for i in range(R)], row_labels, fontsize=7)
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_title(title, fontsize=9, pad=18 if xlabel else 4)
    return fig


def plot_spectra(panels: list[dict[str, Any]], title: str) -> Any:
    """Median spectra (10–90 % band) per curve, one panel per entry of ``panels``.

    Each panel: ``{"title", "ylabel", "curves": [(label, [N, m] array)], "cuts": [(label, x)]}``;
    rank cuts drawn as vertical lines. Log y; non-positive values are left out of the band."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.3), squeeze=False)
    for ax, p in zip(axes[0], panels):
        for i, (lab, arr) in enumerate(p["curves"]):
            a = np.asarray(arr, dtype=np.float64)
            a = np.where(a > 0, a, np.nan)
            if a.size == 0 or not np.isfinite(a).any():
                continue
            x = np.arange(1, a.shape[1] + 1)
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    med = np.nanmedian(a, axis=0)
                    lo, hi = np.nanpercentile(a, 10, axis=0), np.nanpercentile(a, 90, axis=0)
            # about a dozen markers per curve tell the curves apart in greyscale (one per point was
            # most of the figure's drawing time at large d)
            line, = ax.plot(x, med, _STYLES[i % 4], marker=_MARKERS[i % 6], ms=2.5, lw=1.1, label=lab,
                            markevery=max(1, len(x) // 12))
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
        for j, (lab, cx) in enumerate(p.get("cuts", [])):
            if cx is not None and np.isfinite(cx):
                ax.axvline(cx + 0.5, color="k", ls=_STYLES[(j + 1) % 4], lw=0.9, label=lab)
        ax.set_yscale("log")
        ax.set_xlabel("component index (1 = largest)")
        ax.set_ylabel(p["ylabel"])
        ax.set_title(p["title"], fontsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


#: most bars (bins × series) a histogram panel draws side by side; beyond, each series is one
#: outline (every bar is one hatched patch to render: hundreds of them dominate the report's time)
MAX_BARS = 120


def plot_histograms(panels: list[dict[str, Any]], title: str) -> Any:
    """Integer histograms: each panel ``{"title", "xlabel", "series": [(label, values)]}``,
    series side by side (hatched, so they differ in greyscale); with more than
    :data:`MAX_BARS` bars in a panel, one step outline per series (line styles differ)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.0), squeeze=False)
    hatches = ("", "//", "..", "xx", "\\\\")
    for ax, p in zip(axes[0], panels):
        series = [(lab, np.asarray(v, dtype=np.float64)) for lab, v in p["series"]]
        series = [(lab, v[np.isfinite(v)]) for lab, v in series]
        allv = np.concatenate([v for _, v in series]) if series else np.zeros(0)
        if allv.size:
            lo, hi = int(allv.min()), int(allv.max())
            bins = np.arange(lo, hi + 2) - 0.5
            width = 0.8 / max(1, len(series))
            outline = (hi - lo + 1) * len(series) > MAX_BARS
            for i, (lab, v) in enumerate(series):
                cnt, _ = np.histogram(v, bins=bins)
                if outline:
                    ax.stairs(cnt, bins, label=lab, linestyle=_STYLES[i % 4], lw=1.1)
                else:
                    ax.bar(np.arange(lo, hi + 1) - 0.4 + width * (i + 0.5), cnt, width=width, label=lab,
                           hatch=hatches[i % len(hatches)], edgecolor="k", lw=0.4)
            if len(series) > 1:
                ax.legend(fontsize=6)
        ax.set_xlabel(p["xlabel"])
        ax.set_ylabel("samples (count)")
        ax.set_title(p["title"], fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_realized_vs_linear_faceted(realized: pd.DataFrame, max_panels: int = 12) -> tuple[Any, int]:
    """Realized against linearized locality at the smallest |α|, one panel per (region,
    method, scored_on) group. Returns (figure, rows dropped for a NaN locality)."""
    r = realized[realized["carrying"] & ~realized["self_pair"] & ~realized["inert"]]
    if r.empty:
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.set_title("realized vs linearized locality: no rows", fontsize=9)
        return fig, 0
    a0 = r["strength"].iloc[int(np.argmin(np.abs(r["strength"].to_numpy(dtype=float))))]
    r = r[r["strength"] == a0]
    bad = ~(np.isfinite(r["locality"].to_numpy(dtype=float)) & np.isfinite(r["linear_locality"].to_numpy(dtype=float)))
    dropped = int(bad.sum())
    r = r[~bad]
    keys = sorted(r.groupby(["region", "method", "scored_on"], observed=True).size().index.tolist())[:max_panels]
    n = max(1, len(keys))
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 2.7 * rows), squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys):
        g = r[(r["region"] == key[0]) & (r["method"] == key[1]) & (r["scored_on"] == key[2])]
        ax.plot(g["linear_locality"], g["locality"], ".", ms=3, alpha=0.6, color="k")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_title(f"{key[1]} · {key[0]}" + (f"→{key[2]}" if key[2] != key[0] else "") + f" (n={len(g)})",
                     fontsize=7)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
    for ax in axes[-1]:
        ax.set_xlabel("linearized locality (1)")
    for ax in axes[:, 0]:
        ax.set_ylabel("realized locality (1)")
    fig.suptitle(f"Realized vs linearized locality at α = {float(a0):g} (carrying directions, cross pairs)", fontsize=9)
    fig.tight_layout()
    return fig, dropped
