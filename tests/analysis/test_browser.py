"""report.html and the explorer in a real headless browser (Debian's chromium + chromium-driver).

A small store is built through the CLI as a user would (synthetic generator, every stage
including previews); the report and the explorer are opened from file:// and checked for
console errors, images that failed to load, a summary table that fits its container, and
an explorer that reacts to its controls. Screenshots go to /tmp/lrgan-browser-*.png.
A second test recomputes report numbers from the store with plain zarr + numpy.
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from lrgan_dist.testing.cli import cli, cli_json, write_spec

pytestmark = pytest.mark.slow

CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = Path("/tmp")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    job = write_spec(tmp / "job.yaml", samples={"count": 8, "seed": 0}, store={"chunk_samples": 4},
                     methods={"lowrankgan": {"lam": 0.25, "rank_tol": 1e-5}, "jacobian_svd": {}, "ganspace": {}},
                     transfer={"sources": 2, "realized_pairs": 8, "similarity_samples": 4},
                     previews={"samples": 2, "directions": 2, "strengths": [-1, 0, 1]})
    rep = cli_json("submit", str(job), "--json", "--no-progress", "--report", str(tmp / "report"), timeout=900)
    # 2 regions × (2 methods × (per-sample, population, consensus directions) + ganspace's population directions)
    assert rep["stages"]["previews"]["units"] == 14, rep["stages"]["previews"]
    store = tmp / "store.zarr"
    exp = cli_json("explore", str(store), "--out", str(tmp / "explorer"), "--json")
    assert exp["frames"] > 0
    return store, tmp / "report", tmp / "explorer"


@pytest.fixture(scope="module")
def driver():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not Path(CHROMEDRIVER).exists() or shutil.which("chromium") is None:
        pytest.skip("chromium / chromium-driver not installed (apt-get install -y chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
              "--allow-file-access-from-files"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def _errors(drv) -> list[str]:
    return [e["message"] for e in drv.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]


def _wait(cond, timeout: float = 15.0) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.1)
    return False


def _broken_images(drv) -> list[str]:
    return drv.execute_script(
        "return Array.from(document.images).filter(i => i.getAttribute('src') && "
        "(!i.complete || i.naturalWidth === 0)).map(i => (i.getAttribute('src') || '').slice(0, 80));")


def test_report_in_browser(built, driver):
    _, report, _ = built
    driver.get((report / "report.html").resolve().as_uri())
    assert _wait(lambda: driver.execute_script("return document.readyState") == "complete")
    assert _wait(lambda: not _broken_images(driver)), _broken_images(driver)
    n_img = driver.execute_script("return document.images.length")
    assert n_img >= 8
    # the summary table fits its container, or the container scrolls
    fit = driver.execute_script(
        "const d = document.getElementById('summary'); const t = d.querySelector('table');"
        "const ox = getComputedStyle(d).overflowX;"
        "return {tw: t.scrollWidth, cw: d.clientWidth, ox: ox, bw: document.body.clientWidth, dw: d.scrollWidth};")
    assert fit["tw"] <= fit["cw"] or fit["ox"] in ("auto", "scroll"), fit
    assert fit["cw"] <= fit["bw"], fit  # the container itself never overflows the page
    # text left, numbers right
    align = driver.execute_script(
        "const t = document.querySelector('#summary table');"
        "return [getComputedStyle(t.querySelector('td.txt')).textAlign,"
        "        getComputedStyle(t.querySelector('td.num')).textAlign];")
    assert align == ["left", "right"], align
    page_w = driver.execute_script("return document.documentElement.scrollWidth")
    assert page_w <= 1400, page_w  # nothing pushes the page sideways
    driver.save_screenshot(str(SHOTS / "lrgan-browser-report-top.png"))
    driver.execute_script("document.getElementById('summary').scrollIntoView()")
    driver.save_screenshot(str(SHOTS / "lrgan-browser-report-summary.png"))
    driver.execute_script("document.querySelector('img[alt^=\"eyes: each row\"]')?.scrollIntoView()")
    driver.save_screenshot(str(SHOTS / "lrgan-browser-report-edits.png"))
    # the edit grids of the per-sample, population and consensus directions render, with captions
    widths = driver.execute_script(
        "return Array.from(document.querySelectorAll('figure img')).map(i => [i.alt, i.naturalWidth, i.naturalHeight]);")
    for what in ("its own top 2 directions", "the top 2 population directions", "the top 2 consensus directions"):
        hit = [w for w in widths if what in w[0]]
        assert len(hit) == 2 and all(w[1] > 0 and w[2] > 0 for w in hit), (what, [w[0][:60] for w in widths])
    assert driver.execute_script("return Array.from(document.querySelectorAll('h3')).some("
                                 "h => h.textContent.startsWith('Population and consensus directions applied'))")
    driver.execute_script("document.querySelector('img[alt*=\"population directions\"]').scrollIntoView()")
    driver.save_screenshot(str(SHOTS / "lrgan-browser-report-population.png"))
    assert _errors(driver) == []


def test_explorer_in_browser(built, driver):
    _, _, explorer = built
    driver.get((explorer / "index.html").resolve().as_uri())
    assert _wait(lambda: driver.execute_script("return document.readyState") == "complete")
    frame = driver.find_element("id", "frame")
    assert _wait(lambda: bool(frame.get_attribute("src")))
    assert _wait(lambda: not _broken_images(driver)), _broken_images(driver)
    driver.save_screenshot(str(SHOTS / "lrgan-browser-explorer.png"))
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    src0 = frame.get_attribute("src")
    direction = Select(driver.find_element("id", "direction"))
    assert len(direction.options) >= 2
    direction.select_by_index(1)
    src1 = frame.get_attribute("src")
    assert src1 != src0
    slider = driver.find_element("id", "slider")
    slider.send_keys(Keys.ARROW_RIGHT)
    assert _wait(lambda: frame.get_attribute("src") != src1)
    src2 = frame.get_attribute("src")
    assert src2 != src1
    # method and region pickers change the frame too; the scores table is filled
    Select(driver.find_element("id", "method")).select_by_index(1)
    assert frame.get_attribute("src") != src2
    cells = driver.execute_script("return Array.from(document.querySelectorAll('#scores-body td')).map(t => t.textContent)")
    assert len(cells) == 6 and any(re.match(r"^-?\d", c) for c in cells), cells
    # the population and consensus entries of the method picker load their own frames
    method = Select(driver.find_element("id", "method"))
    names = [o.text for o in method.options]
    assert "ganspace" not in names and "ganspace (population)" in names, names  # population only
    for src, entry in (("population", "jacobian_svd (population)"), ("consensus", "jacobian_svd (consensus)"),
                       ("population", "ganspace (population)")):
        assert len([n for n in names if n.endswith(f"({src})")]) == (3 if src == "population" else 2), names
        method.select_by_visible_text(entry)
        label = entry.split(" (")[0]
        assert _wait(lambda: f"/{label}/{src}/f_" in (frame.get_attribute("src") or ""))
        assert _wait(lambda: driver.execute_script("const f = document.getElementById('frame');"
                                                   "return f.complete && f.naturalWidth > 0;"))
        shown = driver.execute_script("return Array.from(document.querySelectorAll('#scores-body td')).map(t => t.textContent)")
        assert any(re.match(r"^-?\d", c) for c in shown), shown
    driver.save_screenshot(str(SHOTS / "lrgan-browser-explorer-consensus.png"))
    method.select_by_index(0)
    driver.find_element("id", "show-delta").click()
    assert driver.execute_script("return getComputedStyle(document.getElementById('delta')).display") == "block"
    assert _wait(lambda: not _broken_images(driver)), _broken_images(driver)
    driver.save_screenshot(str(SHOTS / "lrgan-browser-explorer-delta.png"))
    assert _errors(driver) == []


def _md_table(md: str, first_col: str) -> list[dict[str, str]]:
    """Rows of the Markdown table whose header starts with ``first_col`` ... containing a key."""
    lines = md.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and first_col in cells:
            out = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                out.append(dict(zip(cells, [c.strip() for c in row.strip().strip("|").split("|")])))
            return out
    raise AssertionError(f"no table with column {first_col}")


def _orth(V: np.ndarray) -> np.ndarray:
    if V.shape[0] == 0:
        return V
    _, s, vh = np.linalg.svd(V, full_matrices=False)
    return vh[: int((s > 1e-6 * s.max()).sum())]


def test_report_numbers_match_the_store(built):
    store, report, _ = built
    md = (report / "report.md").read_text()
    g = zarr.open_group(str(store), mode="r")
    done = np.flatnonzero(g["status"][:] == 1)
    # 1. RPCA convergence: median iterations and unconverged count of eyes/lowrankgan
    rows = [r for r in _md_table(md, "iter_R_median") if r["region"] == "eyes" and r["method"] == "lowrankgan"]
    assert len(rows) == 1
    st = g["directions/eyes/lowrankgan/status"][:]
    ok = done[st[done] == 1]
    it = g["directions/eyes/lowrankgan/diagnostics/iterations_R"][:][ok]
    conv = g["directions/eyes/lowrankgan/diagnostics/converged_B"][:][ok]
    assert float(rows[0]["iter_R_median"]) == pytest.approx(float(np.median(it)), rel=1e-3)
    assert int(rows[0]["unconverged_B"]) == int((conv == 0).sum())
    # 2. cross-method similarity: median Σcos²θ / max rank of carrying subspaces, eyes_mask
    rows = [r for r in _md_table(md, "median_similarity") if r["region"] == "eyes_mask"]
    assert len(rows) == 1
    a, b = rows[0]["method_a"], rows[0]["method_b"]
    M = g["regions/eyes_mask/gram_in"][:].astype(np.float64)
    sims = []
    for i in done:
        bases = []
        for lab in (a, b):
            V = g[f"directions/eyes_mask/{lab}/vectors"][i].astype(np.float64)
            V = V[np.isfinite(V).all(axis=1)]
            e = np.einsum("kd,de,ke->k", V, M[i], V)
            keep = (e >= 0.01 * e.max()) & (e >= 1e-5 * np.trace(M[i]) / M.shape[1]) if e.size else e > 0
            bases.append(_orth(V[keep]))
        Qa, Qb = bases
        if Qa.shape[0] and Qb.shape[0]:
            sims.append(np.linalg.norm(Qa @ Qb.T) ** 2 / max(Qa.shape[0], Qb.shape[0]))
    assert int(rows[0]["samples"]) == len(sims)
    assert float(rows[0]["median_similarity"]) == pytest.approx(float(np.median(sims)), abs=2e-3)
    # 3. the population-only method is listed in the population table with the rank of the centred latents
    rows = [r for r in _md_table(md, "population_rank") if r["method"] == "ganspace"]
    lat = g["latents"][:].astype(np.float64)[done]
    assert len(rows) == 1 and int(rows[0]["population_rank"]) == np.linalg.matrix_rank(lat - lat.mean(0)) == done.size - 1


def test_report_never_rebuilds_the_generator(built, tmp_path):
    """A store whose spec names user code: report and explore still run and never build it."""
    store, _, _ = built
    copy = tmp_path / "hostile.zarr"
    shutil.copytree(store, copy)
    g = zarr.open_group(str(copy), mode="r+")
    spec = dict(g.attrs["spec"])
    marker = tmp_path / "ran"
    spec["generator"] = {"kind": "module", "params": {"factory": "os:system", "args": [f"touch {marker}"]}}
    g.attrs["spec"] = spec
    assert cli("report", str(copy), "--out", str(tmp_path / "r")).returncode == 0
    assert cli("explore", str(copy), "--out", str(tmp_path / "e")).returncode == 0
    assert not marker.exists()
    assert (tmp_path / "r" / "figures" / "edits_0.png").is_file()
    assert (tmp_path / "r" / "figures" / "population_edits_0.png").is_file()
    assert (tmp_path / "e" / "frames" / "eyes" / "jacobian_svd" / "consensus" / "f_0_0_0.png").is_file()
    assert (tmp_path / "e" / "frames" / "eyes_mask" / "ganspace" / "population" / "f_0_0_0.png").is_file()
