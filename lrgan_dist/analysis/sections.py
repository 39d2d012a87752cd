"""Report sections read straight from the store (issue 16): what a researcher looks at.

Each ``add_*`` function reads one part of the store and appends headings, tables and
figures to a report document (anything with ``h(level, text)``, ``p(text)``,
``table(df)``, ``figure(name, png, caption)``, see :class:`lrgan_dist.analysis.report._Doc`):

* :func:`add_gallery` — samples with every region outlined (``images``, ``regions/<r>/mask``);
* :func:`add_edit_grids` — the stored previews (``previews/<r>/<label>``, rendered by the
  previews stage at matched edit size): methods side by side on the same samples, the top
  :data:`REPORT_DIRECTIONS` directions of each as column blocks, with |ΔG| maps; the report
  never rebuilds the generator (a store's spec may name user code);
* :func:`add_spectra` — spectra of M_R, M_B (eigenvalues of the stored Grams), of L_R and
  L_B (LowRankGAN's stored ``sv_R``/``sv_B``) and each method's stored spectrum, rank cut marked;
* :func:`add_rank_histograms` — rank(L_R), rank(L_B) and the number of carrying directions;
* :func:`add_rpca_convergence` — iterations, duality gap, unconverged counts per group;
* :func:`add_method_similarity` — principal angles between methods' carrying subspaces per sample;
* :func:`add_population` — population and consensus spectra and ranks, then
  :func:`add_population_edits`: edit grids of the population and consensus directions
  (``previews/<r>/<label>/population``, ``.../consensus``) on the same samples, the
  population-only methods (ganspace, sefa) among the population directions of every region.

Cost model: every section reads at most ``MAX_SAMPLES`` samples per group (the first done
ones, said in the captions): Grams ``MAX_SAMPLES·d²`` numbers per region and eigenvalues
``MAX_SAMPLES·d³/3`` flops per region and side; vectors ``MAX_SAMPLES·d²`` per group for the
carrying rule and subspace angles (``MAX_SAMPLES·k²·d``); previews are a few MB of uint8.
Figures are one ``imshow`` per mosaic. Quickstart (64 samples, d = 64, 3 regions × 3 methods):
about 5 s on one core, mostly matplotlib.
"""
from __future__ import annotations

import math
from itertools import combinations
from typing import Any, Protocol

import numpy as np
import pandas as pd

from lrgan_dist.analysis.plots import fig_to_png, heat_rgb, outline, paint_outline, plot_histograms, plot_mosaic, plot_spectra
from lrgan_dist.core.subspaces import CARRY_FRAC, orth_bases, paired_subspace_similarity, source_energy
from lrgan_dist.store.layout import PREVIEW_SOURCES
from lrgan_dist.store.zarrstore import DONE, Store, read_rows

__all__ = ["add_gallery", "add_edit_grids", "add_spectra", "add_rank_histograms", "add_rpca_convergence",
           "add_method_similarity", "add_population", "add_population_edits", "preview_groups", "entry_name",
           "PREVIEW_SOURCES", "REPORT_DIRECTIONS", "MAX_SAMPLES", "GALLERY"]

#: samples read per group for spectra, histograms and angles (the first done ones)
MAX_SAMPLES = 64
#: samples shown in the gallery
GALLERY = 8


class Doc(Protocol):
    def h(self, level: int, text: str) -> None: ...
    def p(self, text: str) -> None: ...
    def table(self, df: pd.DataFrame) -> None: ...
    def figure(self, name: str, png: bytes, caption: str) -> None: ...


def _done(st: Store) -> np.ndarray:
    return np.flatnonzero(st.status() == DONE)


def _groups(st: Store) -> dict[str, list[tuple[str, str]]]:
    """region → [(label, path)] of per-sample result groups, default labels first."""
    out: dict[str, list[tuple[str, str]]] = {}
    for region, label, path in st.direction_groups():
        out.setdefault(region, []).append((label, path))
    for r in out:
        out[r].sort(key=lambda lp: ("@" in lp[0], lp[0]))
    return out


def _group_done(st: Store, path: str, samples: np.ndarray) -> np.ndarray:
    s = np.asarray(st.group[f"{path}/status"][:])
    return samples[s[samples] == DONE]


def _mask(st: Store, region: str, i: int) -> np.ndarray:
    arr = st.group[f"regions/{region}/mask"]
    return np.asarray(arr[...] if arr.ndim == 2 else arr[i], dtype=np.float64)


# ----------------------------------------------------------------------------- gallery


def add_gallery(st: Store, doc: Doc) -> None:
    done = _done(st)
    if done.size == 0:
        return
    show = done[np.unique(np.round(np.linspace(0, done.size - 1, min(GALLERY, done.size))).astype(int))]
    imgs = read_rows(st.group["images"], show)
    hw = imgs.shape[1:3]
    tiles, labels = [], []
    for r in st.layout.regions:
        tiles.append([paint_outline(imgs[j], outline(_mask(st, r, int(i)), hw)) for j, i in enumerate(show)])
        kind = "per-sample mask" if r in st.layout.per_sample_masks else "fixed region"
        labels.append(f"{r}\n({kind})")
    doc.h(2, "Samples and regions")
    fig = plot_mosaic(tiles, labels, [f"#{int(i)}" for i in show], "Samples with each region outlined",
                      xlabel="sample index", ylabel="region")
    doc.figure("gallery", fig_to_png(fig),
               f"{len(show)} of {done.size} done samples (evenly spread) with each region's mask outlined in magenta "
               "(mask > 0.5 on the analysis grid, upsampled to the preview); per-sample masks move with the face.")


# ----------------------------------------------------------------------------- edit grids (stored previews)


#: top directions per method shown as rows of the report's edit grids (the explorer shows all)
REPORT_DIRECTIONS = 3


def _by_label(groups: Any) -> list[tuple[str, Any]]:
    """(label, group) pairs, default labels first (``<label>@<hash8>``: other parameters, after)."""
    return sorted(groups, key=lambda kv: ("@" in kv[0], kv[0]))


def entry_name(label: str, source: str) -> str:
    """Display name of a previews group: the label, ``label (population)``, ``label (consensus)``."""
    return label if source == "sample" else f"{label} ({source})"


def preview_groups(st: Store, sources: tuple[str, ...] = ("sample",)) -> dict[str, list[tuple[str, Any]]]:
    """region → [(entry name, zarr group)] of complete previews of the given direction sets
    (``sample``: ``previews/<r>/<label>``; ``population``/``consensus``: its subgroups), in
    the order of ``sources``, default labels first within each."""
    out: dict[str, list[tuple[str, Any]]] = {}
    if "previews" not in st.group:
        return out
    for region, rg in sorted(st.group["previews"].groups()):
        labs = _by_label(rg.groups())
        for src in sources:
            for label, g in labs:
                sub = g if src == "sample" else (g[src] if src in g else None)
                if sub is not None and sub.attrs.get("complete"):
                    out.setdefault(region, []).append((entry_name(label, src), sub))
    return out


def _edit_mosaic(st: Store, region: str, labs: list[tuple[str, Any]], title: str,
                 directions: int = REPORT_DIRECTIONS) -> tuple[Any, int, int]:
    """One mosaic of stored previews: rows (sample, entry), column blocks direction k ≤ ``directions``
    × (strengths, |ΔG|). Returns (figure, directions shown, blank tiles: direction not defined)."""
    first = labs[0][1]
    samples = np.asarray(first["samples"][...])
    strengths = np.asarray(first["strengths"][...], dtype=float)
    hw = tuple(first["frames"].shape[3:5])
    K = min(directions, max(g["frames"].shape[1] for _, g in labs))
    tiles, rows = [], []
    blank = np.full((*hw, 3), 255, dtype=np.uint8)
    missing = 0
    for si, smp in enumerate(samples):
        edge = outline(_mask(st, region, int(smp)), hw)  # type: ignore[arg-type]
        for label, g in labs:
            fr = np.asarray(g["frames"][si, :K])  # [K, A, H', W', 3]
            dl = np.asarray(g["delta"][si, :K])
            ok = np.asarray(g["directions"][si, :K]) >= 0
            loc = np.asarray(g["locality"][si, :K], dtype=float)
            row: list[np.ndarray] = []
            for k in range(K):
                if k >= fr.shape[0] or not ok[k]:
                    missing += 1
                    row += [blank] * (len(strengths) + 1)
                    continue
                row += [paint_outline(f, edge) if s == 0 else f for f, s in zip(fr[k], strengths)]
                row.append(paint_outline(heat_rgb(dl[k]), edge))
            tiles.append(row)
            locs = " ".join(f"{v:.2f}" if np.isfinite(v) else "–" for v in loc[:K])
            rows.append(f"#{int(smp)} {label}\n" + (f"loc {locs}" if ok.any() else "(no direction)"))
    sl = [f"{s:+g}" if s else "0" for s in strengths]
    cols = [c for k in range(K) for c in (*(f"k={k}: {x}" if j == 0 else x for j, x in enumerate(sl)), f"k={k}: |ΔG|")]
    fig = plot_mosaic(tiles, rows, cols, title, tile_inches=0.64, block=len(strengths) + 1,
                      xlabel="direction k (0 = best): edit strength s (multiples of the matched size) · |ΔG| map",
                      ylabel="sample, method")
    return fig, K, missing


def add_edit_grids(st: Store, doc: Doc, directions: int = REPORT_DIRECTIONS) -> None:
    groups = preview_groups(st)
    doc.h(2, "Edits at matched strength (methods side by side)")
    if not groups:
        doc.p("No stored previews: run the previews stage (lrgan-dist submit JOB --stages previews). The report "
              "never rebuilds the generator from a store, so edit grids come only from stored previews.")
        return
    root: dict[str, Any] = dict(st.group["previews"].attrs)
    doc.p("Frames were rendered by the previews stage. Strength s means a latent step s·α with α chosen per "
          "(sample, direction) so that the first-order change of the whole image, ‖J v‖·α, equals one target for "
          f"every method (target = {root.get('config', {}).get('size', 1)} × the median change of a random unit "
          f"latent step = {float(root.get('target', float('nan'))):.3g} on the analysis grid). Equal totals: the "
          "methods differ only in where the change goes. Each direction k is one block of columns (strengths, then "
          "the |ΔG| map: per-pixel change magnitude at the largest strength, viridis, scaled to each tile's "
          "maximum). Signs are aligned across samples (each per-sample direction has a non-negative inner product "
          "with the population direction of the same method it is closest to), so s > 0 moves every sample the same "
          "way. Explore every direction with 'lrgan-dist explore'.")
    for ri, (region, labs) in enumerate(groups.items()):
        fig, K, missing = _edit_mosaic(st, region, labs, f"{region}: top directions of each method, matched edit size",
                                       directions)
        note = f"; {missing} blank blocks: the method has fewer directions at that sample" if missing else ""
        doc.figure(f"edits_{ri}", fig_to_png(fig),
                   f"{region}: each row is one sample edited along its own top {K} directions (blocks k = 0…{K - 1}, "
                   "0 = best) of one method; within a block, columns are strengths s (multiples of the matched edit "
                   "size) and the |ΔG| map; the region is outlined in magenta at s = 0 and on |ΔG|; 'loc' lists the "
                   f"first-order locality (share of ‖J v‖² inside the region, 0–1) of k = 0…{K - 1}{note}.")


# ----------------------------------------------------------------------------- spectra and ranks


def _eigs(G: np.ndarray) -> np.ndarray:
    """Descending eigenvalues [N, d] of symmetric [N, d, d] (NaN rows stay NaN)."""
    ok = np.isfinite(G).all(axis=(1, 2))
    out = np.full(G.shape[:2], np.nan)
    if ok.any():
        Gs = 0.5 * (G[ok] + np.swapaxes(G[ok], 1, 2))
        out[ok] = np.linalg.eigvalsh(Gs)[:, ::-1]
    return out


def add_spectra(st: Store, doc: Doc) -> None:
    done = _done(st)[:MAX_SAMPLES]
    if done.size == 0:
        return
    doc.h(2, "Spectra and rank cuts")
    for ri, (region, labs) in enumerate(_groups(st).items()):
        MR = _eigs(read_rows(st.group[f"regions/{region}/gram_in"], done).astype(np.float64))
        MB = _eigs(read_rows(st.group[f"regions/{region}/gram_out"], done).astype(np.float64))
        left: dict[str, Any] = {"title": "region side: M_R and L_R", "ylabel": "eigen/singular value (per pixel)",
                                "curves": [("eig M_R", MR)], "cuts": []}
        right: dict[str, Any] = {"title": "rest side: M_B and L_B", "ylabel": "eigen/singular value (per pixel)",
                                 "curves": [("eig M_B", MB)], "cuts": []}
        meth: dict[str, Any] = {"title": "each method's stored spectrum", "ylabel": "spectrum value", "curves": []}
        nan_rows = 0
        for label, path in labs:
            g: Any = st.group[path]
            idx = _group_done(st, path, done)
            nan_rows += int(done.size - idx.size)
            sp = read_rows(g["spectrum"], idx).astype(np.float64)
            meth["curves"].append((label, sp))
            if "diagnostics" in g and "sv_R" in g["diagnostics"]:
                d = g["diagnostics"]
                left["curves"].append((f"sv L_R ({label})", read_rows(d["sv_R"], idx)))
                right["curves"].append((f"sv L_B ({label})", read_rows(d["sv_B"], idx)))
                for side, panel in (("R", left), ("B", right)):
                    if f"rank_{side}" in d:
                        rk = read_rows(d[f"rank_{side}"], idx).astype(np.float64)
                        rk = rk[rk >= 0]
                        if rk.size:
                            panel["cuts"].append((f"median rank L_{side} ({label}) = {np.median(rk):g}",
                                                  float(np.median(rk))))
        fig = plot_spectra([left, right, meth], f"{region}: spectra (median over samples, 10–90 % band)")
        doc.figure(f"spectra_{ri}", fig_to_png(fig),
                   f"{region}: eigenvalues of the per-pixel Grams M_R, M_B and singular values of LowRankGAN's "
                   f"low-rank parts L_R, L_B (lines: median over {done.size} done samples; bands: 10–90 %), with the "
                   "median numerical rank marked by a vertical line — the cut LowRankGAN makes; right: each method's "
                   f"own spectrum. Log scale: zeros and negatives are not drawn. {nan_rows} (sample, method) entries "
                   "left out (not done in that group).")


def _carrying_counts(st: Store, region: str, path: str, idx: np.ndarray) -> np.ndarray:
    V = read_rows(st.group[f"{path}/vectors"], idx).astype(np.float64)
    M = read_rows(st.group[f"regions/{region}/gram_in"], idx).astype(np.float64)
    if V.shape[0] == 0:
        return np.zeros(0)
    kmax = int(np.isfinite(V).all(axis=2).sum(axis=1).max()) or 1
    return source_energy(V[:, :kmax], M, CARRY_FRAC)["carrying"].sum(axis=1)


def add_rank_histograms(st: Store, doc: Doc) -> None:
    done = _done(st)[:MAX_SAMPLES]
    if done.size == 0:
        return
    doc.h(2, "Ranks and carrying directions")
    for ri, (region, labs) in enumerate(_groups(st).items()):
        rr, rb, carry = [], [], []
        for label, path in labs:
            g: Any = st.group[path]
            idx = _group_done(st, path, done)
            if "diagnostics" in g and "rank_R" in g["diagnostics"]:
                rr.append((label, read_rows(g["diagnostics/rank_R"], idx)))
                rb.append((label, read_rows(g["diagnostics/rank_B"], idx)))
            carry.append((label, _carrying_counts(st, region, path, idx)))
        panels = []
        if rr:
            panels += [{"title": "rank(L_R)", "xlabel": "rank of L_R (directions)", "series": rr},
                       {"title": "rank(L_B)", "xlabel": "rank of L_B (directions)", "series": rb}]
        panels.append({"title": "carrying directions per sample", "xlabel": "carrying directions (count)",
                       "series": carry})
        fig = plot_histograms(panels, f"{region}: ranks and carrying directions ({done.size} samples)")
        doc.figure(f"ranks_{ri}", fig_to_png(fig),
                   f"{region}: how many samples (y) have each rank / number of directions (x). Carrying = region "
                   f"energy vᵀM_R v ≥ {CARRY_FRAC:g} × the sample's strongest direction and not inert. First "
                   f"{done.size} done samples; samples not done in a group are left out of its bars.")


def add_rpca_convergence(st: Store, doc: Doc) -> None:
    rows = []
    done = _done(st)
    for region, labs in _groups(st).items():
        for label, path in labs:
            g: Any = st.group[path]
            if "diagnostics" not in g or "iterations_R" not in g["diagnostics"]:
                continue
            idx = _group_done(st, path, done)
            d = g["diagnostics"]
            row: dict[str, Any] = {"region": region, "method": label, "samples": int(idx.size)}
            for side in ("R", "B"):
                it = read_rows(d[f"iterations_{side}"], idx).astype(np.float64)
                gap = read_rows(d[f"gap_{side}"], idx).astype(np.float64) if f"gap_{side}" in d else np.full(idx.size, np.nan)
                conv = read_rows(d[f"converged_{side}"], idx).astype(bool) if f"converged_{side}" in d else np.ones(idx.size, bool)
                row[f"iter_{side}_median"] = float(np.median(it)) if it.size else math.nan
                row[f"iter_{side}_max"] = float(np.max(it)) if it.size else math.nan
                row[f"gap_{side}_max"] = float(np.nanmax(gap)) if np.isfinite(gap).any() else math.nan
                row[f"unconverged_{side}"] = int((~conv).sum())
            rows.append(row)
    if not rows:
        return
    doc.h(2, "RPCA convergence")
    df = pd.DataFrame(rows)
    bad = int(df["unconverged_R"].sum() + df["unconverged_B"].sum())
    doc.p("Per LowRankGAN result group: iterations of the RPCA solver on M_R and M_B (median, max), the largest "
          "relative duality gap (certificate; NaN where the solver reports none) and the number of problems that "
          f"did not converge. Unconverged problems in this store: {bad}" +
          (" — their directions are kept but are not certified optimal." if bad else "."))
    doc.table(df)


def add_method_similarity(st: Store, doc: Doc) -> None:
    done = _done(st)[:MAX_SAMPLES]
    rows = []
    for region, labs in _groups(st).items():
        if len(labs) < 2:
            continue
        M = read_rows(st.group[f"regions/{region}/gram_in"], done).astype(np.float64)
        bases = {}
        for label, path in labs:
            V = read_rows(st.group[f"{path}/vectors"], done).astype(np.float64)
            ok = np.asarray(st.group[f"{path}/status"][:])[done] == DONE
            kmax = max(1, int(np.isfinite(V).all(axis=2).sum(axis=1).max())) if V.size else 1
            keep = source_energy(V[:, :kmax], M, CARRY_FRAC)["carrying"] & ok[:, None]
            bases[label] = orth_bases(V[:, :kmax], keep)
        for a, b in combinations([lab for lab, _ in labs], 2):
            (Qa, ra), (Qb, rb) = bases[a], bases[b]
            s = paired_subspace_similarity(Qa, ra, Qb, rb)
            sim, ang = s["similarity"], s["max_angle"]
            fin = np.isfinite(sim)
            rows.append({"region": region, "method_a": a, "method_b": b, "samples": int(fin.sum()),
                         "empty (left out)": int((~fin).sum()),
                         "median_similarity": float(np.median(sim[fin])) if fin.any() else math.nan,
                         "median_max_angle_deg": float(np.median(ang[fin])) if fin.any() else math.nan,
                         "median_rank_a": float(np.median(ra)), "median_rank_b": float(np.median(rb))})
    if not rows:
        return
    doc.h(2, "Do the methods find the same directions?")
    doc.p("Per sample, the principal angles between two methods' carrying subspaces: similarity = Σcos²θ / max rank "
          "(1 = same subspace, 0 = orthogonal) and the largest principal angle (degrees; unmatched dimensions of the "
          f"larger subspace count as 90°); medians over the first {done.size} done samples. 'empty' counts samples "
          "where one method has no carrying direction (no angle defined).")
    doc.table(pd.DataFrame(rows))


def add_population(st: Store, doc: Doc) -> None:
    if "population" not in st.group:
        return
    rows = []
    figs = []
    pop: Any = st.group["population"]
    for region, rg in sorted(pop.groups()):
        if region == "_latent":  # population-only methods (ganspace, sefa): one region-free direction set
            for label, g in _by_label(rg.groups()):
                if "spectrum" in g:
                    rows.append({"region": "(any: region-free)", "method": label,
                                 "population_rank": int(np.isfinite(np.asarray(g["spectrum"][...], dtype=float)).sum())})
            continue
        if region.startswith("_"):
            continue
        curves, cons = [], []
        for label, g in _by_label(rg.groups()):
            if "spectrum" not in g:
                continue
            sp = np.asarray(g["spectrum"][...], dtype=np.float64)
            rank = int(np.asarray(g["rank"][...])) if "rank" in g else -1
            row: dict[str, Any] = {"region": region, "method": label, "population_rank": rank}
            curves.append((label, sp[None, :]))
            if "consensus" in g and "spectrum" in g["consensus"]:
                cs = np.asarray(g["consensus/spectrum"][...], dtype=np.float64)
                cons.append((label, cs[None, :]))
                row["consensus_eig_max"] = float(np.nanmax(cs)) if cs.size else math.nan
                row["consensus_dims_≥0.5"] = int((cs >= 0.5).sum())
                row["consensus_dims_≥0.9"] = int((cs >= 0.9).sum())
            rows.append(row)
        if curves:
            panels = [{"title": "population spectrum (mean Grams)", "ylabel": "spectrum value", "curves": curves}]
            if cons:
                panels.append({"title": "consensus: eigenvalues of the mean projector", "ylabel": "share of samples (1)",
                               "curves": cons})
            figs.append((region, plot_spectra(panels, f"{region}: population and consensus spectra")))
    if not rows:
        return
    doc.h(2, "Population and consensus directions")
    doc.p("Population directions: each method applied to the Grams averaged over all done samples (population-only "
          "methods: ganspace on the stored latents, sefa on the generator's weights, one direction set for every "
          "region). Consensus: the top eigenvectors of the mean projector onto the per-sample carrying subspaces; an "
          "eigenvalue of 1 is a direction every sample's subspace contains, 0.5 one that half of them contain.")
    doc.table(pd.DataFrame(rows))
    for i, (region, fig) in enumerate(figs):
        doc.figure(f"population_{i}", fig_to_png(fig),
                   f"{region}: left, each method's spectrum on the mean Grams; right, consensus eigenvalues "
                   "(1 = shared by every sample). Log scale: zero eigenvalues are not drawn.")
    add_population_edits(st, doc)


_SHARED_CAPTION = {
    "population": ("population directions (each method on the Grams averaged over all done samples; ganspace and "
                   "sefa: their one region-free set, from the latents or the weights, scored against this region; "
                   "directions beyond the population rank are blank)"),
    "consensus": ("consensus directions (top eigenvectors of the mean projector onto the per-sample carrying "
                  "subspaces, signs aligned to the population directions; directions with an eigenvalue below 0.001 "
                  "are blank)"),
}


def _consensus_shares(st: Store, labs: list[tuple[str, Any]], K: int) -> str:
    """' Eigenvalues (share of samples containing the direction, 1 = all) of k = 0…K−1: label a, b, c; …'."""
    parts = []
    for name, g in labs:
        path = str(g.attrs.get("directions_path", ""))
        if f"{path}/spectrum" in st.group:
            sp = np.asarray(st.group[f"{path}/spectrum"][:K], dtype=float)
            parts.append(f"{name} " + ", ".join(f"{v:.2f}" for v in sp))
    return (f" Consensus eigenvalues (share of samples whose carrying subspace contains the direction, 1 = all) of "
            f"k = 0…{K - 1}: " + "; ".join(parts) + ".") if parts else ""


def add_population_edits(st: Store, doc: Doc, directions: int = REPORT_DIRECTIONS) -> None:
    """Edit grids of the population and consensus directions (stored previews), same samples and
    matched edit size as the per-sample grids: one direction set applied to every sample."""
    n = 0
    for source in PREVIEW_SOURCES[1:]:
        for i, (region, labs) in enumerate(preview_groups(st, (source,)).items()):
            if n == 0:
                doc.h(3, "Population and consensus directions applied to the same samples")
                doc.p("One direction set per (region, method), the same for every sample, rendered by the previews "
                      "stage on the faces of the per-sample edit grids at the same matched edit size (strength s = a "
                      "latent step s·α with ‖J v‖·α equal for every direction and sample). A direction that "
                      "generalizes changes the same part of every face; 'loc' is its first-order locality at each "
                      "sample (share of ‖J v‖² inside the region, 0–1).")
            labs = [(name.removesuffix(f" ({source})"), g) for name, g in labs]  # the figure title names the source
            fig, K, missing = _edit_mosaic(st, region, labs, f"{region}: {source} directions of each method, matched "
                                           "edit size", directions)
            note = f"; {missing} blank blocks (direction not defined)" if missing else ""
            extra = _consensus_shares(st, labs, K) if source == "consensus" else ""
            doc.figure(f"{source}_edits_{i}", fig_to_png(fig),
                       f"{region}: each row is one sample edited along the top {K} {_SHARED_CAPTION[source]} of one "
                       f"method; blocks k = 0…{K - 1}, within a block the strengths s (multiples of the matched edit "
                       "size) and the |ΔG| map (per-pixel change at the largest strength, viridis, scaled per tile); "
                       f"region outlined in magenta{note}.{extra}")
            n += 1
