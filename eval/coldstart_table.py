"""The cold-start table: exec of a fresh process -> the first mask, same run, same image.

    python eval/coldstart_table.py [--image PATH] [--repeat 5] [--bundle DIR] [--out FILE]

Rows (each a fresh process per repetition; rounds interleaved, each in a new seeded shuffled order,
so drift hits every row alike; --rows picks some):
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
                             isnet-general-use-cpu, where it is built (ONNX Runtime or OpenVINO)
  the OpenVINO bundle        the exported server of isnet-general-use-ov-int8 (--openvino), where it
                             is built: with the compiled model the export shipped (imported at
                             start), and with --portable (the IR compiled at every start)
Each time is exec -> the moment the answer exists (the child's result line or the HTTP answer),
on the parent's clock; medians over the repetitions. The OS file cache holds every model after
the first repetition, for every row alike. Writes JSON to --out (default: the results folder,
coldstart/table-TIME.json) and the markdown table beside it (.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from studio import settings  # noqa: E402
from studio.export.coldstart import measure_bundle, median_of  # noqa: E402

FP32 = "isnet-general-use"
INT8 = "isnet-general-use-int8-static"
CPU_PICK = "isnet-general-use-cpu"  # the shipped CPU pick (eval/quant/README.md); rows when it is built
OV_INT8 = "isnet-general-use-ov-int8"  # the OpenVINO NNCF build; rows when it is built

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
import resource
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"t_script": t0, "import_s": t1 - t0, "session_s": t2 - t1, "first_remove_s": t3 - t2,
                  "cpu_first_s": ru.ru_utime + ru.ru_stime}), flush=True)
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


def installed(vid: str) -> bool:
    from studio import artifacts
    from studio.zoo import load_zoo

    zoo = load_zoo()
    return vid in zoo.variants and artifacts.installed(zoo.get(vid)) is not None


def runtime_of(vid: str) -> str:
    from studio.zoo import load_zoo

    return load_zoo().get(vid).runtime


def markdown(names: list[str], runs: dict[str, list[dict]], med: dict[str, dict], image: Path, repeat: int,
             load: list[float], load_start: list[float], order: str) -> str:
    """The table as the closing notes quote it: medians, spread, ratio to rembg, and where the
    servers' time goes."""
    base = med[names[0]]["total_s"]
    lines = [f"Cold start, exec of a fresh process -> the first mask (the server's first `/api/remove` "
             f"answer); median of {repeat} fresh processes per row, {order}; image `{image.name}`; "
             f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); load average "
             f"{load_start} at the start, {load} at the end.", "",
             "| row | median s | min | max | x rembg | CPU s (x rembg) | model loaded as |",
             "|---|---|---|---|---|---|---|"]
    for n in names:
        ts = [r["total_s"] for r in runs[n]]
        how = med[n].get("health") or {}
        loaded = f"`{how.get('model_file')}` ({how.get('load_optimization')})" if how else ""
        cpu, cpu_base = med[n].get("cpu_first_s"), med[names[0]].get("cpu_first_s")
        cpu_txt = f"{cpu:.2f} ({cpu / cpu_base:.2f})" if cpu and cpu_base else ""
        lines.append(f"| {n} | {med[n]['total_s']:.2f} | {min(ts):.2f} | {max(ts):.2f} | "
                     f"{med[n]['total_s'] / base:.2f} | {cpu_txt} | {loaded} |")
    servers = [n for n in names if "server" in n]
    if servers:
        lines += ["", "| server row | interpreter | listening | runtime imported | model ready | first request "
                      "(of which inference) | warm answer | peak RSS MB |", "|---|---|---|---|---|---|---|---|"]
        for n in servers:
            m = med[n]
            ph = m.get("phases_s") or {}
            lines.append(f"| {n} | {m['interpreter_s']:.2f} | {m['listening_s']:.2f} | "
                         f"{ph.get('runtime_imported', float('nan')):.2f} | {ph.get('session_ready', float('nan')):.2f} | "
                         f"{m['first_request_s']:.2f} ({(m['server_timing_first'] or {}).get('inference', 0):.2f}) | "
                         f"{m['warm_request_s']:.2f} | {m['peak_rss_mb']:.0f} |")
    r = med[names[0]]
    lines += ["", f"rembg: interpreter {r['interpreter_s']:.2f} s, import rembg {r['import_s']:.2f} s, "
                  f"new_session {r['session_s']:.2f} s, first remove {r['first_remove_s']:.2f} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", type=Path, help="default: the first sod-dev image, else an embedded-sample image")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="the shuffled order of the rows in each round")
    ap.add_argument("--bundle", type=Path, help="an exported int8-static bundle (default: export one to a temp dir)")
    ap.add_argument("--no-warmup-row", action="store_true", help="leave out the --warmup server row")
    ap.add_argument("--openvino", default=OV_INT8,
                    help=f"the OpenVINO variant whose bundle gets rows, with and without its shipped compiled "
                         f"model, when it is built (default {OV_INT8})")
    ap.add_argument("--old-serve", type=Path,
                    help="a serve.py of another revision (`git show REV:studio/export/templates/serve.py`): "
                         "one more row, the CPU pick's prepared bundle served by it")
    ap.add_argument("--rows", nargs="*", help="only the rows whose names contain one of these (rembg stays)")
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

    made: dict[str, Path] = {}

    def bundle_of(vid: str, prepare: bool, keep_blob: bool = True) -> Path:
        """The variant's bundle, exported once (in a temp dir); `prepare`: after `serve.py --prepare`."""
        from studio.export import export_bundle

        key = f"{vid}-{'prepared' if prepare else 'portable'}"
        if key in made:
            return made[key]
        plain = made.get(vid)
        if plain is None:
            plain = a.bundle if (vid == INT8 and a.bundle) else work / vid
            if not plain.exists():
                print(f"exporting {vid} to {plain} ...", file=sys.stderr, flush=True)
                export_bundle(vid, plain, check=False)
            made[vid] = plain
        out = work / key
        shutil.copytree(plain, out, ignore=None if keep_blob else shutil.ignore_patterns("model.*.*.onnx"))
        if prepare:
            subprocess.run([sys.executable, "serve.py", "--prepare"], cwd=out, check=True, capture_output=True)
        made[key] = out
        return out

    def server(vid: str, prepare: bool, keep_blob: bool = True, **kw: Any):
        """A row's set-up: export (once) and copy the bundle, then measure a fresh server of it."""
        def setup():
            b = bundle_of(vid, prepare, keep_blob)
            return lambda: measure_bundle(b, image, warm=1, **kw)
        return setup

    # name -> a thunk that sets the row up (exports are made only for the rows that run)
    rows: dict[str, Any] = {
        "rembg (new_session + remove)": lambda: lambda: rembg_row(image, home, work / "rembg.png"),
        "studio predict fp32": lambda: lambda: studio_row(FP32, image, work / "fp32.png"),
        "studio predict int8-static": lambda: lambda: studio_row(INT8, image, work / "int8.png"),
        "exported int8-static server (portable model)": server(INT8, False, keep_blob=False),
        "exported int8-static server (after --prepare)": server(INT8, True),
        "exported int8-static server (--prepare, --warmup)": server(INT8, True, warmup=True),
    }
    if a.no_warmup_row:
        rows = {k: v for k, v in rows.items() if "--warmup" not in k}
    if installed(CPU_PICK):
        rows[f"studio predict {CPU_PICK}"] = lambda: lambda: studio_row(CPU_PICK, image, work / "pick.png")
        rows[f"exported {CPU_PICK} server ({runtime_of(CPU_PICK)}, after --prepare)"] = server(CPU_PICK, True)
        if a.old_serve:
            def old_row():
                old = work / "bundle-cpu-pick-old"
                shutil.copytree(bundle_of(CPU_PICK, True), old)
                shutil.copyfile(a.old_serve, old / "serve.py")
                return lambda: measure_bundle(old, image, warm=1)
            rows[f"exported {CPU_PICK} server, {a.old_serve.name} (after --prepare)"] = old_row
    if a.openvino and installed(a.openvino):
        ov = a.openvino
        # the blob the export compiled on this machine, imported at start; and the IR compiled at
        # every start (--portable: what a machine of another kind of CPU gets)
        rows[f"exported {ov} server (openvino, shipped compiled model)"] = server(ov, False)
        rows[f"exported {ov} server (openvino, --portable: IR compiled at start)"] = server(
            ov, False, extra_args=("--portable",))
        if not a.no_warmup_row:
            rows[f"exported {ov} server (openvino, shipped compiled model, --warmup)"] = server(ov, False, warmup=True)
    elif a.openvino:
        print(f"note: {a.openvino} is not built here (studio build {a.openvino}): no OpenVINO rows",
              file=sys.stderr)
    if a.rows:
        first = next(iter(rows))
        rows = {k: v for k, v in rows.items() if k == first or any(r in k for r in a.rows)}
    names = list(rows)
    measure = {n: make() for n, make in rows.items()}
    load_start = [round(x, 1) for x in os.getloadavg()]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    rng = random.Random(a.seed)
    for rep in range(a.repeat):
        order = names[:]
        rng.shuffle(order)  # a new order each round: no row always first, or always after rembg
        for name in order:
            res = measure[name]()
            res["total_s"] = res.get("total_s", res.get("first_answer_s"))
            runs[name].append(res)
            print(f"[{rep + 1}/{a.repeat}] {name}: {res['total_s']:.2f} s", file=sys.stderr, flush=True)

    load = [round(x, 1) for x in os.getloadavg()]
    med = {n: median_of(r) for n, r in runs.items()}
    text = markdown(names, runs, med, image, a.repeat, load, load_start, f"rounds shuffled (seed {a.seed})")
    print("\n" + text)
    out = a.out or settings.results_dir() / "coldstart" / f"table-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"image": str(image), "repeat": a.repeat, "seed": a.seed,
                               "load_average_start": load_start, "load_average_end": load,
                               "cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                               "median": med, "runs": runs}, indent=2))
    out.with_suffix(".md").write_text(text)
    print(f"wrote {out} and {out.with_suffix('.md').name}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
