"""The report writer: store → report.md, report.html (figures embedded), parquet and CSV tables.

``write_report(store_uri, out_dir)`` writes into ``out_dir``::

    report.md            tables + figures (PNG files under figures/)
    report.html          the same, self-contained (figures as base64 PNG data URIs)
    transfer.parquet     the linearized long table (lrgan_dist.analysis.loaders.TRANSFER_COLUMNS)
    transfer.csv         the same as CSV
    realized.parquet     realized edits (lrgan_dist.analysis.loaders.REALIZED_COLUMNS)   + realized.csv
    summary.csv          method × region × scoring region (summarize_transfer)
    agreement.csv        Spearman(linearized, realized) per α (realized_agreement)
    matched.csv          LowRankGAN carrying vs same-count top directions (matched_comparison)
    lambda_sweep.csv     rank and cross locality vs λ (lambda_sweep)
    box_vs_mask.csv      box vs ground-truth mask (box_vs_mask)
    groups.csv           result groups with parameters (load_groups)
    figures/*.png

and returns ``{"paths": {name: path}, "headline": {...}}`` (JSON-able). Cost: one pass
over the transfer arrays, a few small summaries and the store sections of
:mod:`lrgan_dist.analysis.sections` (their cost model). The report never rebuilds the
generator (a store's spec may name user code): edit grids come from the frames the
previews stage stored.
"""
from __future__ import annotations

import base64
import html
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lrgan_dist.analysis import sections
from lrgan_dist.analysis.loaders import (
    REALIZED_COLUMNS,
    TRANSFER_COLUMNS,
    has_transfer,
    load_groups,
    load_realized,
    load_samples,
    load_similarity,
    load_transfer,
    open_store,
)
from lrgan_dist.analysis.plots import (
    fig_to_png,
    plot_lambda_sweep,
    plot_locality_distributions,
    plot_realized_vs_linear_faceted,
    plot_similarity_matrix,
    plot_transfer_heatmap,
)
from lrgan_dist.analysis.summaries import box_vs_mask, lambda_sweep, matched_comparison, realized_agreement, summarize_transfer
from lrgan_dist.store.zarrstore import attrs_of

__all__ = ["write_report", "markdown_table"]

MAX_HEATMAPS = 6
MAX_SIMILARITY = 6

_COLUMN_DOC = {
    "source": "sample the direction was found on", "target": "sample it is applied to",
    "region": "region of the direction", "method": "result-group label", "method_name": "registry method",
    "scored_on": "region whose target Grams/masks score it", "direction": "k (0 = best)",
    "self_pair": "source == target",
    "carrying": "≥ carry_frac of the source's largest region energy and ≥ 1e-5 of a random direction's",
    "inert": "energy_in + energy_out < 1e-5 · target's (tr M_R + tr M_B)/d (left out of locality means)",
    "source_share": "region energy at the source / source's largest", "energy_in": "vᵀM_R v at the target (per pixel)",
    "energy_out": "vᵀM_B v at the target (per pixel)", "total_in": "energy_in · ΣR", "total_out": "energy_out · ΣB",
    "locality": "share of the change inside R: total_in / (total_in + total_out)",
    "locality_per_pixel": "energy_in / (energy_in + energy_out) (per-pixel ratio, not a share)",
    "baseline": "locality of a random direction at the target: tr M_R·ΣR / (tr M_R·ΣR + tr M_B·ΣB)",
    "strength": "‖J v‖² (whole image) / a random direction's",
    "realized": "pair rendered with the generator",
    "realized_locality": "realized locality (share) at the smallest |α| (NaN if not rendered)",
}


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(float(v)):
            return "–"
        return f"{float(v):.4g}"
    return str(v)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (numbers to 4 significant digits)."""
    if df is None or df.empty:
        return "_(no rows)_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |")
    return "\n".join(lines) + "\n"


def _html_table(df: pd.DataFrame, table_id: str | None = None) -> str:
    """An HTML table in a horizontal scroll container: text columns left-aligned, numbers
    right-aligned (class ``num``), NaN as "–", floats to 4 significant digits."""
    if df is None or df.empty:
        return "<p><em>(no rows)</em></p>"
    num = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    head = "".join(f'<th class="{"num" if n else "txt"}">{html.escape(str(c))}</th>' for c, n in zip(df.columns, num))
    body = []
    for row in df.itertuples(index=False):
        cells = "".join(f'<td class="{"num" if n else "txt"}">{html.escape(_fmt(v))}</td>' for v, n in zip(row, num))
        body.append(f"<tr>{cells}</tr>")
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    return (f'<div class="tblwrap"{ident}><table class="tbl"><thead><tr>{head}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table></div>")


class _Doc:
    """Accumulates report sections for both Markdown and HTML."""

    def __init__(self, fig_dir: Path):
        self.md: list[str] = []
        self.html: list[str] = []
        self.fig_dir = fig_dir
        self.figures: dict[str, Path] = {}

    def h(self, level: int, text: str) -> None:
        self.md.append(f"{'#' * level} {text}\n")
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def p(self, text: str) -> None:
        self.md.append(text + "\n")
        self.html.append(f"<p>{html.escape(text)}</p>")

    def table(self, df: pd.DataFrame, table_id: str | None = None) -> None:
        self.md.append(markdown_table(df))
        self.html.append(_html_table(df, table_id))

    def figure(self, name: str, png: bytes, caption: str) -> None:
        path = self.fig_dir / f"{name}.png"
        path.write_bytes(png)
        self.figures[name] = path
        self.md.append(f"![{caption}](figures/{name}.png)\n\n*{caption}*\n")
        b64 = base64.b64encode(png).decode("ascii")
        self.html.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{b64}"/>'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def render_html(self, title: str) -> str:
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
                 "table.tbl{border-collapse:collapse;font-size:12px;margin:0.5em 0}"
                 "table.tbl td,table.tbl th{border:1px solid #ccc;padding:2px 6px;vertical-align:top}"
                 "table.tbl .num{text-align:right;white-space:nowrap}table.tbl .txt{text-align:left}"
                 "table.tbl th{background:#f3f3f3;position:sticky;top:0}"
                 ".tblwrap{max-width:100%;overflow-x:auto;margin:0.5em 0}"
                 "figure{margin:1em 0}img{max-width:100%}figcaption{font-size:12px;color:#333}")
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><title>{html.escape(title)}</title>"
                f"<style>{style}</style></head><body>\n" + "\n".join(self.html) + "\n</body></html>\n")


def _write_table(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def _headline(summary: pd.DataFrame, agreement: pd.DataFrame, matched: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {"groups": []}
    for r in summary.to_dict("records"):
        out["groups"].append({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()
                              if k in ("region", "method", "scored_on", "method_name", "carrying_per_source",
                                       "self_locality", "self_baseline", "self_strength", "cross_locality",
                                       "cross_baseline", "cross_strength", "generalization_gap",
                                       "realized_cross_locality", "spearman")})
    if not agreement.empty:
        pooled = agreement[agreement["region"] == "all"].sort_values("strength", key=lambda s: s.abs())
        if len(pooled):
            r = pooled.iloc[0]
            out["spearman_smallest_alpha"] = {"strength": float(r["strength"]), "spearman": float(r["spearman"]),
                                              "n": int(r["n"])}
    if not matched.empty:
        out["matched"] = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                          for r in matched.to_dict("records")]
    return out


def write_report(store_uri: str, out_dir: str | Path) -> dict[str, Any]:
    """Write the cross-image study report for ``store_uri`` into ``out_dir``; returns paths and headline numbers."""
    t0 = time.perf_counter()
    st = open_store(store_uri)
    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}

    samples = load_samples(st)
    groups = load_groups(st)
    df = load_transfer(st)
    realized = load_realized(st)
    summary = summarize_transfer(df)
    agreement = realized_agreement(realized)
    matched = matched_comparison(df)
    sweep = lambda_sweep(df, groups)
    tattrs = attrs_of(st.group["transfer"]) if "transfer" in st.group else {}
    sim_samples = (tattrs.get("similarity") or {}).get("samples")
    bvm = box_vs_mask(st, df, samples=sim_samples)

    # Provenance in the parquet files' metadata (pandas writes DataFrame.attrs as the
    # PANDAS_ATTRS schema key; pd.read_parquet(...).attrs gives them back): which store
    # (fingerprint) and which resolved job spec the rows come from.
    from lrgan_dist import __version__ as _v

    for _t in (df, realized):
        _t.attrs.update({"lrgan_dist_store": str(st.uri), "lrgan_dist_fingerprint": st.fingerprint,
                         "lrgan_dist_version": _v, "lrgan_dist_spec": json.dumps(st.spec, default=str)})
    df.to_parquet(out / "transfer.parquet", index=False)
    paths["transfer.parquet"] = str(out / "transfer.parquet")
    paths["transfer.csv"] = str(_write_table(df, out / "transfer.csv"))
    realized.to_parquet(out / "realized.parquet", index=False)
    paths["realized.parquet"] = str(out / "realized.parquet")
    paths["realized.csv"] = str(_write_table(realized, out / "realized.csv"))
    for name, table in (("summary", summary), ("agreement", agreement), ("matched", matched),
                        ("lambda_sweep", sweep), ("box_vs_mask", bvm), ("groups", groups)):
        paths[f"{name}.csv"] = str(_write_table(table, out / f"{name}.csv"))

    doc = _Doc(fig_dir)
    spec = st.spec or {}
    doc.h(1, f"Cross-image generalization report: {spec.get('name', st.uri)}")
    n_done = int(samples["done"].sum())
    gen = (st.group.attrs.get("generator") or {})
    doc.p(f"Store {st.uri}; generator {gen.get('kind', spec.get('generator', {}).get('kind', '?'))}; "
          f"{n_done} of {len(samples)} samples done; latent d = {st.layout.d}; analysis grid "
          f"{st.layout.grid[0]}×{st.layout.grid[1]} ({spec.get('grid', {}).get('channels', 'mean')} channels).")
    no_face = {r: int((st.status() == 1).sum() - st.region_found(r)[st.status() == 1].sum())
               for r in st.layout.landmark_regions}
    if no_face:  # landmark regions: samples whose face the detector did not find are left out of that region
        doc.p("Landmark regions, no face detected (samples left out of that region's directions and scores): "
              + ", ".join(f"{r}: no face: {k}" for r, k in no_face.items()) + ".")
    if not has_transfer(st):
        doc.p("The transfer stage has not run on this store: only the result groups are listed.")
    else:
        lin = tattrs["linear"]
        real = tattrs.get("realized") or {}
        doc.p(f"{len(lin['sources'])} sources × {len(lin['targets'])} targets × up to {lin['k']} directions per "
              f"(region, method); carrying = at least {100 * lin['carry_frac']:g} % of the source's largest region "
              f"energy. Realized edits: {real.get('pairs', 0)} sampled (source, target) pairs at α ∈ "
              f"{real.get('strengths', [])}.")
    doc.p("Per-pixel normalization: the stored Grams are M_R = Jᵀdiag(R)J/ΣR and M_B = Jᵀdiag(B)J/ΣB, so "
          "energy_in = vᵀM_R v is the first-order mean squared change per pixel inside the target's region per unit "
          "step² and energy_out the same outside. locality is the SHARE of the first-order change inside the region: "
          "ΣR·energy_in/(ΣR·energy_in + ΣB·energy_out) (the per-pixel ratio energy_in/(energy_in + energy_out) is "
          "kept as locality_per_pixel; it overstates locality whenever the region is smaller than the rest). "
          "baseline is the locality of a random direction at the same target, tr M_R·ΣR/(tr M_R·ΣR + tr M_B·ΣB): a "
          "method is local only where it beats it. strength is ‖J v‖² over the whole image against a random "
          "direction's (1 = as strong as a random direction; a very local but very weak direction edits nothing "
          "visible). Realized energies "
          "are masked per-pixel MSEs of the pooled images G(x_j ± αv) − G(x_j) divided by α², averaged over ±, "
          "so that they tend to the linearized ones as α → 0 (small α keeps the edit in the linear regime).")

    sections.add_gallery(st, doc)
    doc.h(2, "Self vs cross-image locality (method × region)")
    doc.p("Means over carrying directions that are not inert at the target (inert: first-order energy below "
          "1e-5 of the target's mean energy per direction — the direction changes ~nothing there); cross excludes "
          "self pairs; gap = self − cross; realized at the smallest α. Every locality is printed beside its random "
          "baseline (self_/cross_baseline) and the median edit strength (self_/cross_strength).")
    doc.table(summary, table_id="summary")
    if not matched.empty:
        doc.h(2, "LowRankGAN vs the same number of top directions of other methods")
        doc.p("For each source, m = number of LowRankGAN carrying directions; other methods contribute their best m "
              "directions (jacobian_svd: top eigenvectors of M_R). Cross pairs only.")
        doc.table(matched)
    if not agreement.empty:
        doc.h(2, "Linearized vs realized locality")
        doc.table(agreement)
        fig, dropped = plot_realized_vs_linear_faceted(realized)
        doc.figure("realized_vs_linear", fig_to_png(fig),
                   "Realized (y) against linearized (x) locality at the smallest α, one panel per (method, region → "
                   "scoring region), carrying directions on cross pairs; points on the dotted diagonal mean the "
                   f"first-order prediction holds. {dropped} rows with a NaN locality are not drawn.")
    n_lam = int(sweep.groupby("region")["lam"].nunique().max()) if not sweep.empty and "lam" in sweep else 0
    if not sweep.empty:
        doc.h(2, "λ sweep (LowRankGAN)" if n_lam > 1 else "LowRankGAN groups (one λ)")
        doc.p("Each result group's parameters are read from its zarr attributes (method, params, param_hash); "
              "λ = null resolves to 1/√d. Every λ is listed, also one that gave no direction: empty_share is the "
              "share of samples with no local direction; degenerate flags groups where rank(L_B) = 0 on some "
              "samples (rank_B_zero_share), where LowRankGAN is the unprojected principal directions of L_R "
              "(jacobian_svd), not a local method. Choose λ by held-out (cross-image) locality above the baseline "
              "at a usable strength.")
        doc.table(sweep)
        if n_lam > 1:
            doc.figure("lambda_sweep", fig_to_png(plot_lambda_sweep(sweep)),
                       "Mean rank of L_R (left) and cross-image locality (right) against λ (log axis), one line per "
                       "region; read off the λ where locality is high without the rank collapsing.")
        else:
            doc.p("Only one λ per region in this store: no sweep figure (add LowRankGAN entries with other lam "
                  "values to the job's methods to sweep).")
    if not bvm.empty:
        doc.h(2, "Loose box vs ground-truth mask")
        doc.p("similarity: per-sample Σcos²θ / max rank between the carrying subspaces found with the box and with "
              "the mask (1 = same subspace); localities are cross-image means of carrying directions.")
        doc.table(bvm)
    if not df.empty:
        doc.h(2, "Distributions and heatmaps")
        c = df[df["carrying"] & ~df["inert"]]
        n_nan = int((~np.isfinite(c["locality"].to_numpy(dtype=float))).sum())
        doc.figure("locality_distributions", fig_to_png(plot_locality_distributions(df)),
                   "Cross-image locality (share of the first-order change inside the region, 0–1) of carrying "
                   "directions per method and region: box 25–75 % with whiskers at 5–95 %, dots the pairs, stars the "
                   f"self-pair means; higher is more local. {n_nan} rows with a NaN locality are not drawn.")
        keys = _ordered(st, summary[["region", "method", "scored_on", "method_name"]].astype(str).drop_duplicates())
        for i, (region, method, scored) in enumerate(keys[:MAX_HEATMAPS]):
            doc.figure(f"heatmap_{i}", fig_to_png(plot_transfer_heatmap(df, region, method, scored)),
                       f"Transfer heatmap {region}/{method} scored on {scored}: mean locality (viridis, 0–1, bright = "
                       "local) of a source's carrying directions (rows) at each target (columns); blank cells: no "
                       "carrying, non-inert direction there.")
    shown = 0
    for region, method, _ in st.direction_groups():
        if shown >= MAX_SIMILARITY:
            break
        try:
            sim = load_similarity(st, region, method)
        except KeyError:
            continue
        if shown == 0:
            doc.h(2, "Subspace similarity between samples")
        ranks = np.asarray(sim.get("rank", []))
        empty = [int(sim["similarity"].index[i]) for i in np.flatnonzero(ranks == 0)] if ranks.size else []
        blanks = (f" Blank rows/columns: samples {empty} have no carrying direction (empty subspace), so no angle is "
                  "defined." if empty else " No blanks: every sample has a carrying direction.")
        doc.figure(f"similarity_{shown}", fig_to_png(plot_similarity_matrix(sim, f"{region} / {method}")),
                   f"Carrying-subspace similarity {region}/{method}: Σcos²θ / max rank between two samples' "
                   f"subspaces (1 = same, 0 = orthogonal), samples in average-linkage order.{blanks}")
        shown += 1
    sections.add_edit_grids(st, doc)
    sections.add_spectra(st, doc)
    sections.add_rank_histograms(st, doc)
    sections.add_rpca_convergence(st, doc)
    sections.add_method_similarity(st, doc)
    sections.add_population(st, doc)
    doc.h(2, "Table columns (transfer.parquet)")
    doc.table(pd.DataFrame({"column": list(TRANSFER_COLUMNS), "dtype": list(TRANSFER_COLUMNS.values()),
                            "meaning": [_COLUMN_DOC.get(c, "") for c in TRANSFER_COLUMNS]}))
    doc.p(f"realized.parquet columns: {', '.join(f'{c} ({d})' for c, d in REALIZED_COLUMNS.items())}.")
    doc.h(2, "Result groups")
    doc.p("empty_share: share of done samples with no direction at all (no local direction; LowRankGAN drops "
          "directions that change the region less than 1e-5 of a random direction).")
    doc.table(groups)

    (out / "report.md").write_text("\n".join(doc.md))
    (out / "report.html").write_text(doc.render_html(f"lrgan-dist report: {spec.get('name', '')}"))
    paths["report.md"] = str(out / "report.md")
    paths["report.html"] = str(out / "report.html")
    for name, p in doc.figures.items():
        paths[f"figures/{name}.png"] = str(p)
    headline = _headline(summary, agreement, matched)
    headline["seconds"] = round(time.perf_counter() - t0, 2)
    return json.loads(json.dumps({"paths": paths, "headline": headline}, default=lambda v: None if v is None else float(v)))


def _ordered(st: Any, keys: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(region, method, scored_on) for display: per-sample-mask regions first, LowRankGAN
    then jacobian_svd then other methods, default labels before variants."""
    rank = {"lowrankgan": 0, "jacobian_svd": 1}
    per_sample = set(st.layout.per_sample_masks)
    rows = keys.to_dict("records")
    rows.sort(key=lambda r: (r["region"] not in per_sample, r["region"], r["method"] != r["method_name"],
                             rank.get(r["method_name"], 2), r["method"], r["scored_on"] != r["region"],
                             r["scored_on"]))
    return [(r["region"], r["method"], r["scored_on"]) for r in rows]
