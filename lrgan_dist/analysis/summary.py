"""The end-of-run summary printed by ``lrgan-dist submit``.

Samples done/failed; per region and method the mean rank (directions per sample) and
span (the dimension those rows span, ``diagnostics/span``), the share of samples with no
direction at all ("no local direction"), the mean number of carrying directions
(:func:`lrgan_dist.core.subspaces.carrying`), and for the carrying directions at their own
sample: the locality (SHARE of the first-order change inside the region), the random-
direction baseline beside it (a method is local only above it) and the median edit
strength (‖J v‖² against a random direction's, whole image; issue 18); when the
generator exposes ground truth (the synthetic generator) the agreement of the carrying
directions with the true part subspace: the largest sine to it and the fraction of it
they span. Locality, baseline and strength are :mod:`lrgan_dist.core.scores`' formulas.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from lrgan_dist.analysis.loaders import stored_mean_span
from lrgan_dist.core.scores import baseline_share, edit_strength, headline, locality_share
from lrgan_dist.core.subspaces import carrying, region_energy, span_dimension, subspace_coverage, subspace_sines
from lrgan_dist.spec import JobSpec
from lrgan_dist.store.zarrstore import DONE, Store, attrs_of

__all__ = ["summarize", "truth_part"]

MAX_SCORED = 64  # samples scored against ground truth (the first done ones)


def truth_part(spec: JobSpec, region: str, parts: list[str]) -> str | None:
    r = spec.region(region)
    # A fixed box is scored only when the spec says so (truth: PART): on samples whose
    # part moved out of the box the comparison would be meaningless.
    for cand in (r.truth, r.part):
        if cand is not None and cand in parts:
            return cand
    return None


def summarize(spec: JobSpec, store: Store) -> dict[str, Any]:
    out: dict[str, Any] = {"samples": {"total": store.layout.n, **store.counts()}, "directions": []}
    if store.layout.landmark_regions:  # done samples whose face was not found, per landmark region
        ok = store.status() == DONE
        out["samples"]["no_face"] = {r: int((ok & ~store.region_found(r)).sum()) for r in store.layout.landmark_regions}
    truth: dict[str, np.ndarray] = {}
    if spec.generator.kind == "synthetic" or "ground_truth" in (attrs_of(store.group).get("generator") or {}):
        from lrgan_dist.apply.build import make_generator

        gen = make_generator(spec, "cpu")
        if hasattr(gen, "ground_truth_subspaces"):
            truth = {k: v.detach().cpu().double().numpy() for k, v in gen.ground_truth_subspaces().items()}
    for region, label, path in store.direction_groups():
        g = store.group[path]
        st = np.asarray(g["status"][:])
        done = np.flatnonzero(st == DONE)
        row: dict[str, Any] = {
            "region": region,
            "method": label,
            "done": int(done.size),
            "mean_rank": float(np.asarray(g["rank"][:])[done].mean()) if done.size else float("nan"),
            "empty_share": float((np.asarray(g["rank"][:])[done] == 0).mean()) if done.size else float("nan"),
            "mean_span": stored_mean_span(g, st == DONE),
        }
        part = truth_part(spec, region, list(truth)) if truth else None
        if done.size:
            idx = done[:MAX_SCORED]
            lo, hi = int(idx.min()), int(idx.max()) + 1
            V = np.asarray(g["vectors"][lo:hi])[idx - lo].astype(np.float64)
            M = np.asarray(store.group[f"regions/{region}/gram_in"][lo:hi])[idx - lo].astype(np.float64)
            sel = carrying(V, M)
            row["mean_carrying"] = float(sel.sum(axis=1).mean())
            if not np.isfinite(row["mean_span"]):  # a store from before the span was stored: the scored samples
                row["mean_span"] = float(span_dimension(V).mean())
            row.update(_self_scores(store, region, idx, V, M, sel))
            if part is not None:
                Q = truth[part]
                sines, cover = [], []
                for i in range(len(idx)):
                    Vi = V[i][sel[i]]
                    if Vi.shape[0] == 0:
                        continue
                    sines.append(float(subspace_sines(Vi, Q).max()))
                    cover.append(subspace_coverage(Vi, Q))
                row["truth"] = part
                row["max_sine_median"] = float(np.median(sines)) if sines else float("nan")
                row["in_subspace_frac"] = float(np.mean(np.array(sines) < 0.05)) if sines else float("nan")
                row["coverage_mean"] = float(np.mean(cover)) if cover else float("nan")
        out["directions"].append(row)
    return out


def _self_scores(store: Store, region: str, idx: np.ndarray, V: np.ndarray, M_in: np.ndarray,
                 sel: np.ndarray) -> dict[str, float]:
    """Locality (share), its random baseline and the median strength of the carrying
    directions V [n, k, d] at their own samples ``idx`` (M_in [n, d, d] their M_R)."""
    lo, hi = int(idx.min()), int(idx.max()) + 1
    M_out = np.asarray(store.group[f"regions/{region}/gram_out"][lo:hi])[idx - lo].astype(np.float64)
    m = store.region_mask(region, lo, hi).astype(np.float64)
    m = m[idx - lo] if m.ndim == 3 else np.broadcast_to(m, (len(idx), *m.shape))
    a_in, a_out = m.sum(axis=(1, 2))[:, None], (1.0 - m).sum(axis=(1, 2))[:, None]  # [n, 1]
    e_in, e_out = region_energy(V, M_in), region_energy(V, M_out)
    tr_in = np.trace(M_in, axis1=1, axis2=2)[:, None]
    tr_out = np.trace(M_out, axis1=1, axis2=2)[:, None]
    hl = headline(locality_share(e_in, e_out, a_in, a_out), sel, np.zeros_like(sel), True,
                  baseline=baseline_share(tr_in, tr_out, a_in, a_out),
                  strength=edit_strength(e_in, e_out, tr_in, tr_out, a_in, a_out, V.shape[-1]))
    return {"self_locality": hl["self_locality"], "baseline": float(np.nanmean(baseline_share(tr_in, tr_out, a_in, a_out))),
            "strength": hl["self_strength"]}


def format_summary(report: dict[str, Any]) -> str:
    """Human-readable summary table (plain text, for stdout)."""
    s = report["summary"]["samples"]
    lines = [f"store: {report.get('store')}",
             f"samples: {s['done']} done, {s['failed']} failed, {s['pending']} pending (of {s['total']})"]
    if s.get("no_face"):
        lines.append("no face: " + ", ".join(f"{r} {k}" for r, k in s["no_face"].items())
                     + " (landmark regions: those samples are left out of that region)")
    rows = report["summary"]["directions"]
    if rows:
        lines.append("")
        lines.append("locality = share of the first-order change inside the region (carrying directions, "
                     "own sample); random = a random direction's; strength = median |J v|^2 / a random direction's")
        lines.append("rank = directions per sample (rows); span = the dimension they span (rows can be dependent)")
        hdr = (f"{'region':<12} {'method':<16} {'done':>5} {'rank':>6} {'span':>5} {'none':>5} {'carry':>6} {'local':>6} "
               f"{'random':>6} {'strength':>8}  ground truth")
        lines.append(hdr)
        lines.append("-" * len(hdr) + "-" * 30)
        for r in rows:
            gt = ""
            if "truth" in r:
                gt = (f"{r['truth']}: median max-sine {r['max_sine_median']:.3g}, "
                      f"{100 * r['in_subspace_frac']:.0f}% samples all sin<0.05, coverage {r['coverage_mean']:.2f}")
            nan = float("nan")
            lines.append(f"{r['region']:<12} {r['method']:<16} {r['done']:>5} {r['mean_rank']:>6.1f} {r.get('mean_span', nan):>5.1f} "
                         f"{_pct(r.get('empty_share', nan)):>5} {r.get('mean_carrying', nan):>6.1f} "
                         f"{r.get('self_locality', nan):>6.3f} {r.get('baseline', nan):>6.3f} "
                         f"{_strength(r.get('strength', nan)):>8}  {gt}")
    tr = report.get("stages", {}).get("transfer")
    if tr and tr.get("summary", {}).get("groups"):
        lines.append("")
        lines.append(f"transfer: {tr['summary']['sources']} sources x {tr['summary']['targets']} targets "
                     "(locality = share of the first-order change inside the target's region)")
        base = {r["region"]: r.get("baseline") for r in rows}
        hdr = (f"{'region':<12} {'method':<16} {'scored on':<12} {'self':>6} {'cross':>6} {'random':>6} "
               f"{'realized':>9}")
        lines.append(hdr)
        lines.append("-" * len(hdr))
        for g in tr["summary"]["groups"]:
            def f(v: Any) -> str:
                return "   n/a" if v is None or not np.isfinite(v) else f"{v:6.3f}"
            rnd = g.get("cross_baseline", base.get(g.get("scored_on")))
            lines.append(f"{g.get('region', ''):<12} {g.get('method', ''):<16} {g.get('scored_on', ''):<12} "
                         f"{f(g.get('self_locality'))} {f(g.get('cross_locality'))} {f(rnd)} "
                         f"{f(g.get('realized_cross_locality')):>9}")
    if report.get("report"):
        lines.append("")
        lines.append(f"report: {report['report']['dir']}/report.html")
    if "seconds" in report:
        lines.append("")
        lines.append(f"wall time: {report['seconds']:.1f} s")
    return "\n".join(lines)


def _pct(v: float) -> str:
    return "  n/a" if not np.isfinite(v) else f"{100 * v:4.0f}%"


def _strength(v: float) -> str:
    return "n/a" if not np.isfinite(v) else (f"{v:.3g}x")
