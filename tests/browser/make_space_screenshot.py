"""A simulated Hugging Face Space, measured and photographed (not a test).

    python tests/browser/make_space_screenshot.py --tree /tmp/space-sim \\
        [--cache models] [--out docs/screenshots/space_models_fetch.png] [--what all]

`--tree` is a clean checkout of this repository (no weights, no builds). It runs as a fresh Space
would: SPACE_ID set, an empty cache, STUDIO_SHARED an empty folder (no ../shared), PATH holding
only this Python's folder (no npm), and STUDIO_MIRROR pointing at a local mirror laid out from
the real files in `--cache` (`python -m studio.weights.mirror layout`: only files that match the
checksums their sources publish). Everything it writes goes to a temporary folder, except `--out`.

- pageup: process start -> first HTTP 200, the default prefetch set against none, alternated;
- fetch: what reaches the mirror and what gets installed, in order, timed from the page's 200;
- shot: the Models tab mid-fetch in Debian's Chromium (the mirror capped at --rate-mb MB/s so a
  download is still running when the page is up), then the tab and the pickers once done.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from studio.procs import free_port, http_status, stop  # noqa: E402
from studio.weights import mirror  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

HITS: list[tuple[float, str, str | None]] = []


class Logged(mirror.RangeHandler):
    def send_head(self):
        HITS.append((time.time(), self.path, self.headers.get("Range")))
        return super().send_head()


class Space:
    def __init__(self, tree: Path, work: Path):
        self.tree, self.work = tree, work

    def fresh(self, name: str) -> Path:
        d = self.work / name
        shutil.rmtree(d, ignore_errors=True)
        for sub in ("cache", "results", "data", "home", "shared"):
            (d / sub).mkdir(parents=True)
        return d

    def env(self, d: Path, mirror_url: str, prefetch: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "GRADIO_", "SPACE_"))}
        env.update({
            "PATH": str(Path(sys.executable).parent),  # no npm, no node
            "HOME": str(d / "home"), "SPACE_ID": "sim/matting-studio", "STUDIO_SHARED": str(d / "shared"),
            "STUDIO_CACHE": str(d / "cache"), "STUDIO_RESULTS": str(d / "results"), "STUDIO_DATA": str(d / "data"),
            "STUDIO_ARENA_DB": str(d / "results" / "arena.sqlite"), "STUDIO_MIRROR": mirror_url,
            "GRADIO_SERVER_PORT": str(free_port()), "GRADIO_ANALYTICS_ENABLED": "False",
            "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(self.tree),
        })
        if prefetch is not None:
            env["STUDIO_PREFETCH"] = prefetch
        return env

    def start(self, d: Path, env: dict[str, str]) -> tuple[subprocess.Popen, float, float, str]:
        """`python app.py` in the tree; (process, seconds to the first 200, its wall time, url)."""
        url = f"http://127.0.0.1:{env['GRADIO_SERVER_PORT']}/"
        log = open(d / "app.log", "wb")  # noqa: SIM115 (the child writes to it until stopped)
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=self.tree, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        while http_status(url, timeout=1.0) != 200:
            if proc.poll() is not None:
                raise RuntimeError((d / "app.log").read_text()[-3000:])
            time.sleep(0.05)
        return proc, time.perf_counter() - t0, time.time(), url


def installed(d: Path) -> dict[str, dict]:
    w = d / "cache" / "weights"
    return {p.name[:-5]: json.loads(p.read_text()) for p in sorted(w.glob("*.json"))} if w.is_dir() else {}


def pageup(space: Space, url: str, pairs: int) -> dict:
    out: dict[str, list[float]] = {"default set": [], "none": []}
    for _ in range(pairs):
        for label, prefetch in (("default set", None), ("none", "none")):
            d = space.fresh("pageup")
            proc, up, _, _ = space.start(d, space.env(d, url, prefetch))
            stop(proc)
            out[label].append(round(up, 2))
    return {k: {"runs_s": v, "median_s": statistics.median(v)} for k, v in out.items()}


def fetch(space: Space, url: str, until: str, timeout: float = 900) -> dict:
    d = space.fresh("fetch")
    HITS.clear()
    proc, up, up_wall, _ = space.start(d, space.env(d, url))
    try:
        deadline = time.time() + timeout
        while until not in installed(d) and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(2)
    finally:
        stop(proc)
    log = (d / "app.log").read_text()
    line = next((ln for ln in log.splitlines() if ln.startswith("[prefetch]")), "")
    served = float(line.split("HTTP 200 at ")[1].split(")")[0]) if "HTTP 200 at" in line else up_wall
    recs = sorted(installed(d).items(), key=lambda kv: kv[1]["installed_at"])
    return {
        "page_up_s": round(up, 2),
        "prefetch_line": line,
        "first_mirror_request_after_the_200_s": round(HITS[0][0] - served, 3) if HITS else None,
        "mirror_requests": [{"t_s": round(t - served, 2), "path": p, "range": r} for t, p, r in HITS],
        "installed": [{"file": k, "t_s": round(v["installed_at"] - served, 1), "size": v["size"],
                       "sha256": v["sha256"], "source": v["source"]} for k, v in recs],
    }


def shot(space: Space, url: str, out_png: Path) -> dict:
    from playwright.sync_api import sync_playwright

    d = space.fresh("shot")
    proc, up, _, page_url = space.start(d, space.env(d, url))
    info: dict = {"page_up_s": round(up, 2)}
    status = "document.querySelector('#weights-status')?.innerText || ''"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(page_url)
            page.wait_for_selector("#compare-run")
            page.get_by_role("tab", name="Models").click()
            page.wait_for_function(f"() => /downloading [\\s\\S]* MB of/.test({status})")
            page.wait_for_timeout(2500)
            out_png.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out_png))
            info["mid_fetch_status"] = page.inner_text("#weights-status")
            page.wait_for_function(f"() => /all done/.test({status})", timeout=900_000)
            page.wait_for_timeout(2500)
            page.screenshot(path=str(space.work / "space_models_done.png"))
            info["done_status"] = page.inner_text("#weights-status")
            info["header_after"] = page.inner_text("#studio-header").splitlines()[-1]
            page.get_by_role("tab", name="Compare").click()
            page.wait_for_timeout(1000)
            info["compare_pickers_after"] = [el.inner_text() for el in page.query_selector_all(".family-group")
                                             if el.is_visible()]
            browser.close()
    finally:
        stop(proc)
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", type=Path, required=True, help="a clean checkout of this repository")
    ap.add_argument("--cache", type=Path, default=ROOT / "models", help="where the real files are (read only)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "space_models_fetch.png")
    ap.add_argument("--what", choices=["pageup", "fetch", "shot", "all"], default="all")
    ap.add_argument("--pairs", type=int, default=3, help="page-up runs per setting")
    ap.add_argument("--rate-mb", type=float, default=8.0, help="the mirror's cap for the screenshot run")
    ap.add_argument("--until", default="isnet-general-use.onnx", help="the last file of the set to wait for")
    a = ap.parse_args(argv)
    tree = a.tree.resolve()
    if (tree / "models" / "weights").exists() or not (tree / "app.py").is_file():
        ap.error(f"{tree} must be a clean checkout (app.py, and no models/weights)")
    work = Path(tempfile.mkdtemp(prefix="space-sim-"))
    root = work / "mirror"
    env = {**os.environ, "STUDIO_CACHE": str(a.cache.resolve())}
    laid = subprocess.run([sys.executable, "-m", "studio.weights.mirror", "layout", str(root)], cwd=tree,
                          env={**env, "PYTHONPATH": str(tree)}, capture_output=True, text=True, check=True).stdout
    fast, fast_url = mirror.serve(root, handler=Logged)
    slow, slow_url = mirror.serve(root, handler=Logged, rate=a.rate_mb * 1e6)
    report: dict = {"work": str(work), "mirror_layout": laid.split(), "npm_on_path": shutil.which(
        "npm", path=str(Path(sys.executable).parent))}
    space = Space(tree, work)
    try:
        if a.what in ("pageup", "all"):
            report["page_up"] = pageup(space, fast_url, a.pairs)
        if a.what in ("fetch", "all"):
            report["fetch"] = fetch(space, fast_url, a.until)
        if a.what in ("shot", "all"):
            report["shot"] = shot(space, slow_url, a.out.resolve())
    finally:
        fast.shutdown()
        slow.shutdown()
    (work / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
