"""The end-of-run summary printed by ``lrgan-dist submit``.

Samples done/failed; per region and method the mean rank and mean number of carrying
directions (≥ 1 % of the largest region energy); when the generator exposes ground
truth (the synthetic generator) the agreement of the carrying directions with the
true part subspace: the largest sine to it and the fraction of it they span.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from lrgan_dist.core.subspaces import carrying, subspace_coverage, subspace_sines
from lrgan_dist.spec import JobSpec
from lrgan_dist.store.zarrstore import DONE, Store

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
    truth: dict[str, np.ndarray] = {}
    if spec.generator.kind == "synthetic" or "ground_truth" in (store.group.attrs.get("generator") or {}):
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
        }
        part = truth_part(spec, region, list(truth)) if truth else None
        if done.size:
            idx = done[:MAX_SCORED]
            lo, hi = int(idx.min()), int(idx.max()) + 1
            V = np.asarray(g["vectors"][lo:hi])[idx - lo].astype(np.float64)
            M = np.asarray(store.group[f"regions/{region}/gram_in"][lo:hi])[idx - lo].astype(np.float64)
            sel = carrying(V, M)
            row["mean_carrying"] = float(sel.sum(axis=1).mean())
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


def format_summary(report: dict[str, Any]) -> str:
    """Human-readable summary table (plain text, for stdout)."""
    s = report["summary"]["samples"]
    lines = [f"store: {report.get('store')}",
             f"samples: {s['done']} done, {s['failed']} failed, {s['pending']} pending (of {s['total']})"]
    rows = report["summary"]["directions"]
    if rows:
        lines.append("")
        hdr = f"{'region':<12} {'method':<16} {'done':>5} {'rank':>6} {'carry':>6}  ground truth"
        lines.append(hdr)
        lines.append("-" * len(hdr) + "-" * 30)
        for r in rows:
            gt = ""
            if "truth" in r:
                gt = (f"{r['truth']}: median max-sine {r['max_sine_median']:.3g}, "
                      f"{100 * r['in_subspace_frac']:.0f}% samples all sin<0.05, coverage {r['coverage_mean']:.2f}")
            lines.append(f"{r['region']:<12} {r['method']:<16} {r['done']:>5} {r['mean_rank']:>6.1f} "
                         f"{r.get('mean_carrying', float('nan')):>6.1f}  {gt}")
    tr = report.get("stages", {}).get("transfer")
    if tr and tr.get("summary", {}).get("groups"):
        lines.append("")
        lines.append(f"transfer: {tr['summary']['sources']} sources x {tr['summary']['targets']} targets "
                     "(locality = share of the first-order change inside the target's region)")
        hdr = f"{'region':<12} {'method':<16} {'scored on':<12} {'self':>6} {'cross':>6} {'realized':>9}"
        lines.append(hdr)
        lines.append("-" * len(hdr))
        for g in tr["summary"]["groups"]:
            def f(v: Any) -> str:
                return "   n/a" if v is None else f"{v:6.3f}"
            lines.append(f"{g.get('region', ''):<12} {g.get('method', ''):<16} {g.get('scored_on', ''):<12} "
                         f"{f(g.get('self_locality'))} {f(g.get('cross_locality'))} "
                         f"{f(g.get('realized_cross_locality')):>9}")
    if report.get("report"):
        lines.append("")
        lines.append(f"report: {report['report']['dir']}/report.html")
    if "seconds" in report:
        lines.append("")
        lines.append(f"wall time: {report['seconds']:.1f} s")
    return "\n".join(lines)
