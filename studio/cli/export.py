"""`studio export VARIANT DIR`: a serving bundle (model, preprocessing, rembg-API server,
requirements, Dockerfile, README) that runs without the studio and without torch.

    studio export isnet-general-use-int8-static ./bg-service
    cd bg-service && python serve.py --port 7000
    curl -s -F file=@photo.jpg -F om=true http://127.0.0.1:7000/api/remove -o mask.png
"""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="write a serving bundle of an ONNX Runtime or OpenVINO variant (rembg's HTTP API, no studio, no torch)",
        description="Write a self-contained serving bundle of VARIANT to DIR: the model pre-optimised "
                    "for ONNX Runtime (or, for an openvino variant, as OpenVINO IR with its compiled "
                    "model for this CPU), its preprocessing (model.json), serve.py (rembg's HTTP API: "
                    "POST /api/remove, GET /healthz), requirements.txt, a Dockerfile and a README with "
                    "the variant's measured figures. Run it with `python serve.py --port PORT` in DIR.")
    p.add_argument("variant", metavar="VARIANT", help="a variant id whose runtime is ONNX Runtime or OpenVINO (see `studio models`)")
    p.add_argument("dir", metavar="DIR", type=Path, help="the folder to write (new, or an earlier bundle with --force)")
    p.add_argument("--force", action="store_true", help="replace an earlier bundle in DIR")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the check of the bundle's masks against the studio's on sample images")
    p.add_argument("--measure", metavar="IMAGE", type=Path,
                   help="also measure the server's cold start on IMAGE and put it in the README")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    from studio.export import export_bundle

    res = export_bundle(args.variant, args.dir, force=args.force, check=args.check,
                        measure_image=args.measure, progress=not args.json)
    if args.json:
        print(json.dumps(res.to_json(), indent=2))
        return 0
    total = sum(res.files.values())
    print(f"ok     {res.variant} -> {res.dir} ({total / 1e6:.1f} MB, {len(res.files)} files, {res.seconds:.1f} s)")
    for name, size in res.files.items():
        print(f"       {name:24} {size / 1e6:8.2f} MB" if size > 1e5 else f"       {name:24} {size:8d} B")
    if res.agreement:
        a = res.agreement
        print(f"check  masks vs studio predict on {len(a['images'])} sample images: IoU {a['iou_min']:.4f} "
              f"(lowest), largest 8-bit difference {a['max_abs_diff_8bit']}")
    if res.cold_start:
        c = res.cold_start
        print(f"cold   listening {c['listening_s']:.2f} s, first answer {c['first_answer_s']:.2f} s, "
              f"warm {c['warm_request_s']:.2f} s, RSS {c['rss_warm_mb']:.0f} MB")
    if not res.benchmark:
        print(f"note   no benchmark run has {res.variant} yet: the README says how to measure it")
    for note in res.notes:
        print(f"note   {note}")
    print(f"run    cd {res.dir} && python serve.py --port 7000")
    return 0
