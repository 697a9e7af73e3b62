"""The cold-start table: exec of a fresh process -> the first mask, same run, same image.

    python eval/coldstart_table.py [--image PATH] [--repeat 5] [--bundle DIR] [--out FILE]

Rows (each a fresh process per repetition; repetitions interleaved, so drift hits every row alike):
  rembg                      `rembg.new_session("isnet-general-use")` + `remove(only_mask=True)`,
                             pointed at the local fp32 file through a temporary U2NET_HOME (nothing
                             is downloaded)
  studio predict fp32        `studio predict -m isnet-general-use IMAGE` (sha256 check included)
  studio predict int8-static `studio predict -m isnet-general-use-int8-static IMAGE`
  exported server            `python serve.py` of the exported int8-static bundle, to its first
                             `/api/remove?om=true` answer (studio.export.coldstart.measure_bundle);
                             with the portable model.onnx, after `serve.py --prepare`, and with
                             `--warmup`
  the CPU pick               `studio predict` and the exported server (after --prepare) of
                             isnet-general-use-cpu, where it is built
Each time is exec -> the moment the answer exists (the child's result line or the HTTP answer),
on the parent's clock; medians over the repetitions. The OS file cache holds every model after
the first repetition, for every row alike. Writes JSON to --out (default: the results folder).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from studio import settings  # noqa: E402
from studio.export.coldstart import measure_bundle, median_of  # noqa: E402

FP32 = "isnet-general-use"
INT8 = "isnet-general-use-int8-static"
CPU_PICK = "isnet-general-use-cpu"  # the shipped CPU pick (eval/quant/README.md); rows when it is built

REMBG_CHILD = r"""
import json, sys, time
t0 = time.monotonic()
import rembg
t1 = time.monotonic()
session = rembg.new_session("isnet-general-use")
t2 = time.monotonic()
out = rembg.remove(open(sys.argv[1], "rb").read(), session=session, only_mask=True)
t3 = time.monotonic()
open(sys.argv[2], "wb").write(out)
print(json.dumps({"t_script": t0, "import_s": t1 - t0, "session_s": t2 - t1, "first_remove_s": t3 - t2}), flush=True)
"""


def timed_child(cmd: list[str], env: dict[str, str], marker: str) -> tuple[float, str]:
    """Start `cmd`; seconds from exec to the first stdout line containing `marker` (the result)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert proc.stdout is not None
    for line in proc.stdout:
        if marker in line:
            t = time.monotonic() - t0
            proc.communicate(timeout=120)
            return t, line.strip()
    _, err = proc.communicate(timeout=120)
    raise RuntimeError(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}): {err.strip()[-400:]}")


def rembg_row(image: Path, home: Path, out: Path) -> dict:
    env = dict(os.environ, U2NET_HOME=str(home), PYTHONWARNINGS="ignore")
    t0 = time.monotonic()
    total, line = timed_child([sys.executable, "-c", REMBG_CHILD, str(image), str(out)], env, "first_remove_s")
    inner = json.loads(line)
    return {"total_s": total, "interpreter_s": inner.pop("t_script") - t0, **inner}


def studio_row(variant: str, image: Path, out: Path) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    studio = shutil.which("studio", path=str(Path(sys.executable).parent)) or "studio"
    total, line = timed_child([studio, "predict", "-m", variant, str(image), "-o", str(out)], env, " -> ")
    return {"total_s": total, "line": line}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", type=Path, help="default: the first sod-dev image, else an embedded-sample image")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--bundle", type=Path, help="an exported int8-static bundle (default: export one to a temp dir)")
    ap.add_argument("--no-warmup-row", action="store_true", help="leave out the --warmup server row")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="coldstart-table-"))
    image = a.image
    if image is None:
        sod = settings.shared_dir() / "datasets" / "sod-dev" / "im"
        if sod.is_dir():
            image = sorted(sod.iterdir())[0]
        else:
            from PIL import Image

            from studio.data.embedded import pair

            image = work / "sample.png"
            Image.fromarray(pair(0).image).save(image)
    home = work / "u2net"
    home.mkdir()
    (home / "isnet-general-use.onnx").symlink_to(settings.weights_dir() / "isnet-general-use.onnx")

    bundle = a.bundle
    if bundle is None:
        from studio.export import export_bundle

        bundle = work / "bundle"
        print(f"exporting {INT8} to {bundle} ...", file=sys.stderr)
        export_bundle(INT8, bundle, check=False)
    prepared = work / "bundle-prepared"
    shutil.copytree(bundle, prepared)
    subprocess.run([sys.executable, "serve.py", "--prepare"], cwd=prepared, check=True, capture_output=True)
    portable = work / "bundle-portable"
    shutil.copytree(bundle, portable, ignore=shutil.ignore_patterns("model.*.*.onnx"))

    rows = {
        "rembg (new_session + remove)": lambda: rembg_row(image, home, work / "rembg.png"),
        "studio predict fp32": lambda: studio_row(FP32, image, work / "fp32.png"),
        "studio predict int8-static": lambda: studio_row(INT8, image, work / "int8.png"),
        "exported int8-static server (portable model)": lambda: measure_bundle(portable, image, warm=1),
        "exported int8-static server (after --prepare)": lambda: measure_bundle(prepared, image, warm=1),
        "exported int8-static server (--prepare, --warmup)": lambda: measure_bundle(prepared, image, warm=1,
                                                                                    warmup=True),
    }
    if a.no_warmup_row:
        rows = {k: v for k, v in rows.items() if "--warmup" not in k}
    from studio import artifacts
    from studio.zoo import load_zoo

    if artifacts.installed(load_zoo().get(CPU_PICK)) is not None:
        from studio.export import export_bundle

        pick = work / "bundle-cpu-pick"
        export_bundle(CPU_PICK, pick, check=False)
        subprocess.run([sys.executable, "serve.py", "--prepare"], cwd=pick, check=True, capture_output=True)
        rows[f"studio predict {CPU_PICK}"] = lambda: studio_row(CPU_PICK, image, work / "pick.png")
        rows[f"exported {CPU_PICK} server (after --prepare)"] = lambda: measure_bundle(pick, image, warm=1)
    names = list(rows)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for rep in range(a.repeat):
        order = names[rep % len(names):] + names[: rep % len(names)]  # rotate: no row always first
        for name in order:
            res = rows[name]()
            res["total_s"] = res.get("total_s", res.get("first_answer_s"))
            runs[name].append(res)
            print(f"[{rep + 1}/{a.repeat}] {name}: {res['total_s']:.2f} s", file=sys.stderr, flush=True)

    load = [round(x, 1) for x in os.getloadavg()]
    med = {n: median_of(r) for n, r in runs.items()}
    base = med[names[0]]["total_s"]
    print(f"\nCold start, exec -> first mask; median of {a.repeat} fresh processes each; image {image}; "
          f"{os.cpu_count()} CPUs, load average at the end {load}\n")
    print(f"{'':52} {'median s':>8} {'min':>6} {'max':>6} {'x rembg':>8}")
    for n in names:
        ts = [r["total_s"] for r in runs[n]]
        print(f"{n:52} {med[n]['total_s']:8.2f} {min(ts):6.2f} {max(ts):6.2f} {med[n]['total_s'] / base:8.2f}")
    for n in (n for n in names if "server" in n):
        m = med[n]
        st = m["server_timing_first"]
        print(f"\n{n}: where the time goes (medians, s from exec)")
        print(f"  interpreter start-up {m['interpreter_s']:.2f}; listening at {m['listening_s']:.2f}; "
              f"phases {json.dumps({k: round(v, 2) for k, v in m['phases_s'].items()})}")
        print(f"  first request: {m['first_request_s']:.2f} s = " + ", ".join(f"{k} {v:.2f}" for k, v in st.items()))
        print(f"  warm answer {m['warm_request_s']:.2f} s; RSS after first {m['rss_first_mb']:.0f} MB, "
              f"peak {m['peak_rss_mb']:.0f} MB")
    r = med[names[0]]
    print(f"\nrembg: interpreter {r['interpreter_s']:.2f}, import rembg {r['import_s']:.2f}, "
          f"new_session {r['session_s']:.2f}, first remove {r['first_remove_s']:.2f}")
    out = a.out or settings.results_dir() / "coldstart" / f"table-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"image": str(image), "repeat": a.repeat, "load_average_end": load,
                               "cpu_count": os.cpu_count(), "median": med, "runs": runs}, indent=2))
    print(f"\nwrote {out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
