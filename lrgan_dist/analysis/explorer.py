"""A static explorer of directions: store previews → one HTML page plus PNG frames.

``write_explorer(store, out_dir)`` writes::

    out_dir/index.html                          the page: markup, CSS, JS and the scores, all inline
    out_dir/frames/<region>/<label>/f_<s>_<k>_<a>.png   edited frame (sample s, direction k, strength a)
    out_dir/frames/<region>/<label>/d_<s>_<k>.png       |ΔG| overlay (viridis, alpha ~ magnitude)
    out_dir/frames/<region>/<label>/population/...      the same for the population directions
    out_dir/frames/<region>/<label>/consensus/...       the same for the consensus directions
    out_dir/frames/<region>/o_<sample>.png              region outline (transparent except the edge)

The page needs no server, no network and no library: it works from ``file://``. A
reader picks region, method, sample and direction and drags a strength slider; the
method picker lists each method's per-sample directions (``lowrankgan``), then its
population directions (``lowrankgan (population)``: the method on the mean Grams) and
its consensus directions (``lowrankgan (consensus)``: shared by the per-sample
subspaces), all rendered on the same samples at the same matched edit size; the
population-only methods appear as ``ganspace (population)`` / ``sefa (population)`` under
every region (one region-free direction set; its scores refer to the region picked); the
frame is an ``<img>`` whose ``src`` is swapped, so the browser loads only the frames
looked at (lazy by construction; nothing is inlined). Toggles overlay the region
outline and the |ΔG| map; the direction's scores (first-order locality share, energies
vᵀM_R v and vᵀM_B v, ‖J v‖, the matched step α and the rendered in-region share of
|ΔG|²) are shown beside it.

Everything comes from the arrays the previews stage stored (``previews/<region>/<label>``,
see :mod:`lrgan_dist.pipeline.stages.previews`); the generator is never rebuilt (a
store's spec may name user code, issue 14).

Cost model: one read of each previews group (S·K·A·H'·W'·3 bytes) and one PNG encode
per frame: for the quickstart 27 groups (9 per-sample, 9 population, 9 consensus) × 4
samples × 3 directions × (5 strengths + |ΔG|), less the directions not defined: ≈ 1,800
PNGs of 64² (≈ 6 MB on disk, about 5 s on one loaded core).
"""
from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from lrgan_dist.analysis.loaders import open_store
from lrgan_dist.analysis.sections import PREVIEW_SOURCES, preview_groups
from lrgan_dist.store.zarrstore import Store

__all__ = ["write_explorer"]

_SCORES = ("locality", "energy_in", "energy_out", "jnorm", "alpha", "delta_share")


def _png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    # zlib level 1: ~2.5× faster than 6 on these small frames (encoding dominates), ~15 % more bytes
    Image.fromarray(np.ascontiguousarray(arr)).save(path, format="PNG", optimize=False, compress_level=1)


def _outline_rgba(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    from lrgan_dist.analysis.plots import outline

    edge = outline(mask, hw)
    out = np.zeros((*hw, 4), dtype=np.uint8)
    out[edge] = (255, 0, 255, 255)
    return out


def _delta_rgba(delta: np.ndarray) -> np.ndarray:
    from lrgan_dist.analysis.plots import heat_rgb

    rgb = heat_rgb(delta)
    a = np.clip(np.asarray(delta, dtype=np.float64) * (230 / 255), 0, 255).astype(np.uint8)  # no change: transparent
    return np.concatenate([rgb, a[..., None]], axis=-1)


def _num(v: Any) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def _mask(st: Store, region: str, sample: int) -> np.ndarray:
    arr = st.group[f"regions/{region}/mask"]
    return np.asarray(arr[...] if arr.ndim == 2 else arr[sample], dtype=np.float64)


def write_explorer(store: str | Path | Store, out_dir: str | Path) -> dict[str, Any]:
    """Write the explorer for ``store`` into ``out_dir``; returns {"index", "frames", "bytes", "seconds"}."""
    t0 = time.perf_counter()
    st = open_store(store)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = preview_groups(st, PREVIEW_SOURCES)
    data: dict[str, Any] = {"regions": {}, "target": None}
    n_files = 0
    if "previews" in st.group:
        data["target"] = _num(st.group["previews"].attrs.get("target", float("nan")))
    for region, labs in groups.items():
        rdata: dict[str, Any] = {"methods": {}, "outlines": {}}
        for label, g in labs:
            samples = [int(v) for v in np.asarray(g["samples"][...])]
            frames = np.asarray(g["frames"][...])  # [S, K, A, H, W, 3]
            delta = np.asarray(g["delta"][...])
            dirs = np.asarray(g["directions"][...])
            S, K, A = frames.shape[:3]
            rel = "frames/" + str(g.path).split("/", 1)[1]  # frames/<region>/<label>[/population|/consensus]
            base = out / rel
            for s in range(S):
                for k in range(K):
                    if dirs[s, k] < 0:
                        continue
                    for a in range(A):
                        _png(frames[s, k, a], base / f"f_{s}_{k}_{a}.png")
                    _png(_delta_rgba(delta[s, k]), base / f"d_{s}_{k}.png")
                    n_files += A + 1
            scores = {name: [[_num(v) for v in row] for row in np.asarray(g[name][...])]
                      for name in _SCORES if name in g}
            rdata["methods"][label] = {
                "method": str(g.attrs.get("method", label)), "source": str(g.attrs.get("source", "sample")),
                "samples": samples,
                "directions": dirs.astype(int).tolist(),
                "strengths": [float(v) for v in np.asarray(g["strengths"][...])],
                "path": rel, "scores": scores,
            }
            for smp in samples:
                if str(smp) not in rdata["outlines"]:
                    _png(_outline_rgba(_mask(st, region, smp), frames.shape[3:5]),
                         out / "frames" / region / f"o_{smp}.png")
                    rdata["outlines"][str(smp)] = f"frames/{region}/o_{smp}.png"
                    n_files += 1
        data["regions"][region] = rdata
    spec = st.spec or {}
    title = f"lrgan-dist explorer: {spec.get('name', st.uri)}"
    (out / "index.html").write_text(_page(title, data))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"index": str(out / "index.html"), "frames": n_files, "bytes": int(size),
            "seconds": round(time.perf_counter() - t0, 2)}


_CSS = """
body{font-family:sans-serif;margin:1.5em;color:#111;max-width:1100px}
h1{font-size:1.3em}
#controls{display:flex;flex-wrap:wrap;gap:0.8em 1.4em;align-items:center;margin-bottom:1em}
#controls label{font-size:14px}
#main{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}
#stage{position:relative;width:320px;height:320px;border:1px solid #999;background:#eee}
#stage img{position:absolute;left:0;top:0;width:100%;height:100%;image-rendering:pixelated}
#delta{opacity:0.75}
#scores{border-collapse:collapse;font-size:14px}
#scores td,#scores th{border:1px solid #ccc;padding:3px 8px}
#scores th{text-align:left;font-weight:normal;color:#333}
#scores td{text-align:right;font-variant-numeric:tabular-nums}
#slider{width:320px}
.note{font-size:13px;color:#333;max-width:60em}
"""

_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var sel = {region: $("region"), method: $("method"), sample: $("sample"), direction: $("direction")};
  var slider = $("slider");

  function fill(el, items) {
    var keep = el.value;
    el.innerHTML = "";
    items.forEach(function (it) {
      var o = document.createElement("option");
      o.value = it[0]; o.textContent = it[1];
      el.appendChild(o);
    });
    if (items.some(function (it) { return String(it[0]) === keep; })) { el.value = keep; }
  }
  function region() { return D.regions[sel.region.value]; }
  function method() { var r = region(); return r ? r.methods[sel.method.value] : null; }
  function fmt(v) {
    if (v === null || v === undefined) { return "\u2013"; }
    var a = Math.abs(v);
    return (a !== 0 && (a < 1e-3 || a >= 1e4)) ? v.toExponential(3) : v.toPrecision(4);
  }

  function onRegion() {
    var r = region();
    fill(sel.method, Object.keys(r ? r.methods : {}).map(function (m) { return [m, m]; }));
    onMethod();
  }
  function onMethod() {
    var m = method();
    fill(sel.sample, m ? m.samples.map(function (s, i) { return [i, "#" + s]; }) : []);
    if (m) {
      slider.max = String(m.strengths.length - 1);
      var zero = m.strengths.indexOf(0);
      if (Number(slider.value) > m.strengths.length - 1) { slider.value = String(zero >= 0 ? zero : 0); }
    }
    onSample();
  }
  function onSample() {
    var m = method();
    var s = Number(sel.sample.value);
    var items = [];
    if (m) {
      m.directions[s].forEach(function (k, j) { if (k >= 0) { items.push([j, "k = " + k]); } });
    }
    fill(sel.direction, items);
    show();
  }
  function show() {
    var m = method();
    var stage = $("frame");
    if (!m || sel.direction.value === "") {
      stage.removeAttribute("src"); $("status").textContent = "no direction defined here"; return;
    }
    var s = Number(sel.sample.value), k = Number(sel.direction.value), a = Number(slider.value);
    stage.src = m.path + "/f_" + s + "_" + k + "_" + a + ".png";
    stage.alt = sel.region.value + " / " + sel.method.value + " sample " + m.samples[s] + " direction " + k;
    var d = $("delta");
    d.src = m.path + "/d_" + s + "_" + k + ".png";
    d.style.display = $("show-delta").checked ? "block" : "none";
    var o = $("outline");
    o.src = region().outlines[String(m.samples[s])];
    o.style.display = $("show-outline").checked ? "block" : "none";
    $("strength").textContent = (m.strengths[a] >= 0 ? "+" : "") + m.strengths[a] + " \u00d7 matched size";
    var sc = m.scores, rows = [
      ["locality (share of first-order change inside the region)", sc.locality],
      ["energy inside, v\u1d40M_R v (per pixel, per unit step\u00b2)", sc.energy_in],
      ["energy outside, v\u1d40M_B v", sc.energy_out],
      ["\u2016J v\u2016 (image change per unit step)", sc.jnorm],
      ["\u03b1 (latent step of one matched size)", sc.alpha],
      ["rendered |\u0394G|\u00b2 share inside the region", sc.delta_share]];
    var tb = $("scores-body");
    tb.innerHTML = "";
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      var th = document.createElement("th"); th.textContent = r[0];
      var td = document.createElement("td"); td.textContent = r[1] ? fmt(r[1][s][k]) : "\u2013";
      tr.appendChild(th); tr.appendChild(td); tb.appendChild(tr);
    });
    $("status").textContent = "";
  }
  fill(sel.region, Object.keys(D.regions).map(function (r) { return [r, r]; }));
  sel.region.addEventListener("change", onRegion);
  sel.method.addEventListener("change", onMethod);
  sel.sample.addEventListener("change", onSample);
  sel.direction.addEventListener("change", show);
  slider.addEventListener("input", show);
  $("show-delta").addEventListener("change", show);
  $("show-outline").addEventListener("change", show);
  if (!Object.keys(D.regions).length) {
    $("status").textContent = "this store holds no previews: run lrgan-dist submit JOB --stages previews";
    return;
  }
  onRegion();
  var m0 = method();
  if (m0 && m0.strengths.indexOf(0) >= 0) { slider.value = String(m0.strengths.indexOf(0)); show(); }
})();
"""


def _page(title: str, data: dict[str, Any]) -> str:
    blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    target = data.get("target")
    tnote = f" (target first-order change {target:.3g} on the analysis grid)" if target else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="note">Frames were rendered during the pipeline (previews stage) at <b>matched edit size</b>{tnote}: strength s
moves the latent by s·α along the direction, α chosen so that every method changes the image by the same first-order
amount; methods differ in <i>where</i> the change goes. Outline: the region's mask. |ΔG|: per-pixel change at the
largest strength (viridis, bright = more). Method entries: a method's own directions at each sample (signs aligned to
its population directions, so s &gt; 0 moves every sample the same way), its <i>population</i> directions (the method on
the Grams averaged over all samples) and its <i>consensus</i> directions (shared by the samples' subspaces); the last
two are one direction set applied to every sample. <i>ganspace</i> and <i>sefa</i> (population) have only such a set,
the same for every region (from the latents or the generator's weights); their scores refer to the region picked.</p>
<div id="controls">
<label>region <select id="region"></select></label>
<label>method <select id="method"></select></label>
<label>sample <select id="sample"></select></label>
<label>direction <select id="direction"></select></label>
<label><input type="checkbox" id="show-outline" checked/> region outline</label>
<label><input type="checkbox" id="show-delta"/> |ΔG| overlay</label>
</div>
<div id="main">
<div>
<div id="stage"><img id="frame" alt="edited frame"/><img id="delta" alt="|ΔG| overlay"/>
<img id="outline" alt="region outline"/></div>
<p><label>strength <input type="range" id="slider" min="0" max="0" step="1" value="0"/></label> <span id="strength"></span></p>
<p id="status" class="note"></p>
</div>
<table id="scores"><caption>scores of this direction at this sample</caption><tbody id="scores-body"></tbody></table>
</div>
<script type="application/json" id="data">{blob}</script>
<script>{_JS}</script>
</body></html>
"""
