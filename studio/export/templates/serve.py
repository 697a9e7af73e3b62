#!/usr/bin/env python3
"""Background removal over HTTP: the server of a Matting Studio export bundle.

    python serve.py --port 7000          (from inside the bundle folder)

It speaks rembg's server API (`rembg s`), so rembg clients and scripts work unchanged:

  POST /api/remove   multipart/form-data with the image in field `file`.
                     om=true          the mask only: an 8-bit grayscale PNG
                     (default)        the cut-out: an RGBA PNG, the matte as its alpha
                     bgc=R,G,B,A      the cut-out over that colour (as rembg does)
                     model, extras, af, ab, ae: accepted and ignored (one model is served;
                       the X-Model header names it). a, ppm, dc and vm asked true get 400:
                       alpha matting, mask post-processing, decontamination and ViTMatte
                       are rembg add-ons that this bundle does not carry.
                     A raw image body (Content-Type: image/*) is accepted too.
  GET  /api/remove?url=...   501: this bundle does not fetch URLs (it runs offline).
  GET  /healthz      200 {"status": "ok", ...} once the model is loaded; 503 while loading.

Errors are JSON {"detail": "..."} as rembg's server (FastAPI) sends them: 400 an unreadable
image, 413 an upload over --max-upload-mb, 422 a missing file or a bad form value, 503 when
the queue is full (with Retry-After). Every response says how its time was spent in a
Server-Timing header.

One ONNX Runtime session serves every request. At most --workers inferences run at once and
--queue more requests wait; a request beyond that gets 503 at once rather than a timeout.

Start-up is kept lean: the standard library binds the port at once while a loader thread
imports numpy, Pillow and onnxruntime and creates the session, so a first request's upload,
decoding and resizing overlap the model load. Nothing else is imported.

Needs only onnxruntime, numpy and Pillow (requirements.txt). It imports neither the studio
nor torch.
"""

from __future__ import annotations

import time

T_START = time.monotonic()  # after the interpreter's own start-up: the phases count from here

import argparse  # noqa: E402  (after T_START on purpose)
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from email.message import Message  # noqa: E402  (http.server imports email anyway)
from email.utils import collapse_rfc2231_value  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from urllib.parse import parse_qsl  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
          "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
TRUE = {"1", "on", "t", "true", "y", "yes"}  # what rembg's FastAPI (pydantic) reads as booleans
FALSE = {"0", "off", "f", "false", "n", "no"}
UNSUPPORTED = {"a": "alpha matting", "ppm": "mask post-processing", "dc": "edge decontamination",
               "vm": "ViTMatte refinement"}


class ImageError(ValueError):
    """An upload that is not a usable image; the message says why, in plain words."""


class HTTPError(Exception):
    def __init__(self, status: int, detail, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


# --- the studio's image path, duplicated -----------------------------------------------------
# The bundle must run without the studio installed, so what follows is a copy of
# studio/imageio.py (load_image: decode, pixel cap, EXIF, any mode to RGB) and of
# studio/backends/onnx.py (preprocess, postprocess). Keep them in step: the studio's test
# tests/test_export.py::test_template_matches_studio_* feeds both the same inputs and
# requires identical arrays.

RESAMPLE_NAMES = {"lanczos": "LANCZOS", "bilinear": "BILINEAR", "bicubic": "BICUBIC"}


def _resample(name: str):
    from PIL import Image

    return getattr(Image.Resampling, RESAMPLE_NAMES[name])


def array_to_uint8(arr):
    """Scale a numeric array to uint8: 16-bit by its bit depth, floats as [0, 1] or [0, 255]."""
    import numpy as np

    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        top = int(arr.max()) if arr.size else 0
        if top > 255:  # 16-bit data (I;16, I) is scaled by bit depth, not by its own max
            return (np.clip(arr, 0, 65535).astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
        return np.clip(arr, 0, 255).astype(np.uint8)
    arr = np.nan_to_num(arr.astype(np.float64))
    if arr.size and arr.max() <= 1.0:
        arr = arr * 255.0
    return (np.clip(arr, 0, 255) + 0.5).astype(np.uint8)


def to_rgb(img):
    """Any Pillow mode as RGB uint8 (H, W, 3); transparent pixels over white."""
    import numpy as np
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8).copy()
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        gray = array_to_uint8(np.asarray(img))
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


_PILLOW_LOCK = threading.Lock()
_PILLOW: dict[str, int | None] = {"cap": None}


def configure_pillow(max_pixels: int) -> None:
    """Once per process: every image plugin loaded, and Pillow's bomb check at our cap (its
    warning an error), as the studio's loader sets it."""
    if _PILLOW["cap"] == max_pixels:
        return
    with _PILLOW_LOCK:
        if _PILLOW["cap"] != max_pixels:
            import warnings

            from PIL import Image

            Image.init()
            Image.MAX_IMAGE_PIXELS = max_pixels
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            _PILLOW["cap"] = max_pixels


def load_rgb(data: bytes, max_pixels: int):
    """Decode an upload as the studio does: RGB uint8, EXIF-upright, under the pixel cap."""
    import io

    from PIL import Image, UnidentifiedImageError

    configure_pillow(max_pixels)
    if not data:
        raise ImageError("the uploaded data is empty")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("not an image format Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"over the cap of {max_pixels / 1e6:.0f} MP, refused before decoding "
                         f"({exc})") from None
    except OSError as exc:
        raise ImageError(f"cannot be opened ({exc})") from None
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"{w}x{h} is {w * h / 1e6:.1f} MP, over the cap of {max_pixels / 1e6:.0f} MP")
    if w == 0 or h == 0:
        raise ImageError(f"has zero size ({w}x{h})")
    try:
        img.load()
    except OSError as exc:
        raise ImageError(f"truncated or corrupt image data ({exc})") from None
    except (SyntaxError, ValueError) as exc:  # Pillow raises these for broken headers
        raise ImageError(f"corrupt image data ({exc})") from None
    return to_rgb(upright(img))


def upright(img):
    """Apply EXIF orientation; a broken EXIF block should not make the pixels unusable."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        return img


def preprocess(image, size, cfg):
    """RGB uint8 -> NCHW float32: resize, scale (by the resized image's max), normalise."""
    import numpy as np
    from PIL import Image

    resized = np.asarray(Image.fromarray(image).resize(tuple(size), _resample(cfg.get("resize", "lanczos"))))
    scale = cfg.get("scale", "max")
    top = max(float(resized.max()), 1e-6) if scale == "max" else 255.0 if scale == "255" else 1.0
    mean = np.asarray(cfg.get("mean", (0.0, 0.0, 0.0)), dtype=np.float32)
    std = np.asarray(cfg.get("std", (1.0, 1.0, 1.0)), dtype=np.float32)
    gain = (1.0 / (top * std)).astype(np.float32)[:, None, None]
    offset = (-mean / std).astype(np.float32)[:, None, None]
    x = np.empty((1, 3, size[1], size[0]), dtype=np.float32)
    np.multiply(resized.transpose(2, 0, 1), gain, out=x[0])
    x[0] += offset
    return x


def postprocess(pred, out_size, cfg):
    """Raw first-channel output -> the 8-bit matte at (width, height) `out_size`.

    The studio's alpha is exactly this divided by 255 (it rounds to 8 bits before the resize)."""
    import numpy as np
    from PIL import Image

    pred = pred.astype(np.float32, copy=False)
    if cfg.get("activation") == "sigmoid":
        pred = 1.0 / (1.0 + np.exp(-pred))
    lo, hi = float(pred.min()), float(pred.max())
    if cfg.get("normalize", "minmax") == "minmax" and hi > lo:
        q = pred - lo
        q *= 255.0 / (hi - lo)
        q += 0.5
        quantised = q.astype(np.uint8)
    else:  # a constant output has no range to stretch: keep its value
        quantised = (np.clip(pred, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    small = Image.fromarray(quantised, mode="L")
    return np.asarray(small.resize(tuple(out_size), _resample(cfg.get("resize", "lanczos"))))

# --- end of the duplicated part ---------------------------------------------------------------


def read_config(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    if cfg.get("format") != 1:
        raise SystemExit(f"error: {path}: unknown bundle format {cfg.get('format')!r}")
    return cfg


def cpu_key(ort_version: str) -> str:
    """What a fully optimised CPU model depends on: ONNX Runtime's version, the architecture and
    the vector extensions that set its NCHWc block size (AVX-512 packs 16 channels, AVX2 8)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = set(line.partition(":")[2].split())
                    break
    except OSError:
        return f"ort{ort_version}-{os.uname().machine}-unknown"
    isa = [x for x in ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma", "avx", "asimd", "sve")
           if x in flags]
    return f"ort{ort_version}-{os.uname().machine}-{'-'.join(isa) or 'base'}"


def prepared_path(cfg: dict, ort_version: str) -> str:
    return os.path.join(HERE, f"model.{cfg['model_sha256'][:12]}.{cpu_key(ort_version)}.onnx")


def prepare(cfg: dict) -> str:
    """Optimise the portable model as a start would (ORT_ENABLE_ALL: NCHWc layouts for this CPU)
    and save it beside; later starts on a CPU of the same kind load it with no optimisation pass."""
    import onnxruntime as ort

    dst = prepared_path(cfg, ort.__version__)
    tmp = dst + ".part"
    opts = ort.SessionOptions()
    level = cfg["ort"]["load_optimization"]  # the level a start would apply: usually all
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    opts.optimized_model_filepath = tmp
    opts.log_severity_level = 3
    ort.InferenceSession(os.path.join(HERE, cfg["model_file"]), sess_options=opts,
                         providers=["CPUExecutionProvider"])
    os.replace(tmp, dst)
    return dst


class Model:
    """The one ONNX Runtime session, loaded by a thread while the port is already open."""

    def __init__(self, cfg: dict, args):
        self.cfg, self.args = cfg, args
        self.session = None
        self.input_name = None
        self.model_file: str | None = None
        self.level: str | None = None
        self.error: str | None = None
        self.ready = threading.Event()
        self.marks: dict[str, float] = {"script": T_START}

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()

    def load(self) -> None:
        try:
            # The session first: a first request imports Pillow and decodes its image meanwhile,
            # in its own thread (onnxruntime releases the GIL while it builds the session).
            import numpy as np
            import onnxruntime as ort

            self.mark("runtime_imported")
            providers = ["CPUExecutionProvider"]
            if self.args.device.startswith("cuda"):
                if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels
                    ort.preload_dlls()
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            path, level = self.choose_model(ort.__version__)
            opts = ort.SessionOptions()
            opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
            if self.args.threads > 0:
                opts.intra_op_num_threads = self.args.threads
                opts.inter_op_num_threads = 1
            self.apply_settings(ort, opts)
            opts.log_severity_level = 3
            session = ort.InferenceSession(path, sess_options=opts, providers=providers)
            self.model_file, self.level = os.path.basename(path), level
            if providers[0] == "CUDAExecutionProvider" and "CUDAExecutionProvider" not in session.get_providers():
                raise RuntimeError("CUDA was asked for but onnxruntime fell back to CPU "
                                   "(is onnxruntime-gpu installed, and the CUDA/cuDNN libraries?)")
            self.input_name = session.get_inputs()[0].name
            self.mark("session_ready")
            configure_pillow(self.args.max_pixels)  # if no request has yet
            self.mark("imaging_ready")
            if self.args.warmup:
                w, h = self.cfg["input_size"]
                session.run(None, {self.input_name: np.zeros((1, 3, h, w), dtype=np.float32)})
                self.mark("warmed_up")
            self.session = session
        except BaseException as exc:  # the server cannot serve without its model: exit loudly
            self.error = f"{type(exc).__name__}: {exc}"
            print(f"error: the model could not be loaded: {self.error}", file=sys.stderr, flush=True)
            os._exit(3)
        finally:
            self.ready.set()

    def apply_settings(self, ort, opts) -> None:
        """The variant's ONNX Runtime session settings (its zoo entry's options.ort), as the studio
        applies them."""
        extra = self.cfg["ort"].get("session") or {}
        if "execution_mode" in extra:
            opts.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if extra["execution_mode"] == "parallel"
                                   else ort.ExecutionMode.ORT_SEQUENTIAL)
        if extra.get("inter_op_threads"):
            opts.inter_op_num_threads = int(extra["inter_op_threads"])
        if "allow_spinning" in extra:
            flag = "1" if extra["allow_spinning"] else "0"
            opts.add_session_config_entry("session.intra_op.allow_spinning", flag)
            opts.add_session_config_entry("session.inter_op.allow_spinning", flag)
        if "cpu_mem_arena" in extra:
            opts.enable_cpu_mem_arena = bool(extra["cpu_mem_arena"])
        if "mem_pattern" in extra:
            opts.enable_mem_pattern = bool(extra["mem_pattern"])

    def choose_model(self, ort_version: str) -> tuple[str, str]:
        """This CPU's prepared model (`--prepare`) when there is one, loaded as it is; else the
        portable model.onnx, optimised further at load."""
        if self.args.device == "cpu" and not self.args.optimization and not self.args.portable:
            prepared = prepared_path(self.cfg, ort_version)
            if os.path.isfile(prepared):
                return prepared, "disable"
        level = self.args.optimization or self.cfg["ort"]["load_optimization"]
        return os.path.join(HERE, self.cfg["model_file"]), level

    def startup(self) -> dict:
        """Seconds from the script's first line to each start-up phase, and to now."""
        return {k: round(v - T_START, 4) for k, v in self.marks.items() if k != "script"}


class Gate:
    """A bounded queue: `workers` inferences at once, `queue` more waiting, 503 beyond."""

    def __init__(self, workers: int, queue: int):
        self.workers = max(1, workers)
        self.capacity = self.workers + max(0, queue)
        self._admit = threading.BoundedSemaphore(self.capacity)
        self.run = threading.BoundedSemaphore(self.workers)
        self._lock = threading.Lock()
        self.inflight = 0
        self.service_s = 1.0  # moving average of a request's time, for Retry-After

    def enter(self) -> bool:
        if not self._admit.acquire(blocking=False):
            return False
        with self._lock:
            self.inflight += 1
        return True

    def leave(self, seconds: float | None) -> None:
        with self._lock:
            self.inflight -= 1
            if seconds is not None:
                self.service_s = 0.8 * self.service_s + 0.2 * seconds
        self._admit.release()

    def retry_after(self) -> int:
        with self._lock:
            return max(1, math.ceil(self.service_s * self.inflight / self.workers))


def parse_bool(name: str, value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    v = value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise HTTPError(422, [{"type": "bool_parsing", "loc": ["body", name],
                           "msg": "Input should be a valid boolean, unable to interpret input",
                           "input": value}])


def parse_color(value: str | None):
    if not value:
        return None
    try:
        color = tuple(int(c) for c in value.split(","))
    except ValueError:
        color = ()
    if len(color) != 4 or not all(0 <= c <= 255 for c in color):
        raise HTTPError(422, f"bgc must be four integers 0-255, R,G,B,A (got {value!r})")
    return color


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """`form-data; name="file"; filename="a.jpg"` -> ("form-data", {name:..., filename:...})."""
    m = Message()
    m["x"] = value
    params = m.get_params(header="x") or []
    main = params[0][0].lower() if params else ""
    return main, {k.lower(): collapse_rfc2231_value(v) for k, v in params[1:]}


def parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, bytes]]:
    """multipart/form-data -> (text fields, file fields). The deprecated cgi module is not used."""
    _, params = header_params(content_type)
    boundary = params.get("boundary")
    if not boundary:
        raise HTTPError(400, "multipart/form-data without a boundary")
    delim = b"--" + boundary.encode("latin-1")
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    pos = body.find(delim)
    if pos < 0:
        raise HTTPError(400, "malformed multipart body: no boundary found")
    while True:
        pos += len(delim)
        if body[pos:pos + 2] == b"--":  # the closing delimiter
            break
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise HTTPError(400, "malformed multipart body: truncated")
        start = eol + 2
        end = body.find(b"\r\n" + delim, start)
        if end < 0:
            raise HTTPError(400, "malformed multipart body: truncated (no closing boundary)")
        part = body[start:end]
        split = part.find(b"\r\n\r\n")
        if part.startswith(b"\r\n"):
            head, content = b"", part[2:]
        elif split >= 0:
            head, content = part[:split], part[split + 4:]
        else:
            raise HTTPError(400, "malformed multipart body: a part without headers")
        disposition = ""
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                disposition = value.strip()
        _, dparams = header_params(disposition)
        name = dparams.get("name")
        if name is not None:
            if "filename" in dparams or name == "file":
                files.setdefault(name, content)
            else:
                fields[name] = content.decode("utf-8", "replace")
        pos = end + 2
    return fields, files


def png_bytes(img, compress_level: int) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and curl's Expect: 100-continue is answered at once
    server_version = "matting-bundle/1"
    timeout = 120  # seconds a client may take to send a request (slow clients lose their slot)

    # set by make_server
    model: Model
    gate: Gate
    args: argparse.Namespace
    cfg: dict

    def log_message(self, format, *args):  # noqa: A002 (the base class's signature)
        if not self.args.quiet:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def send_json(self, status: int, payload, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_body(status, body, "application/json", headers)

    def send_body(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def fail(self, exc: HTTPError) -> None:
        self.send_json(exc.status, {"detail": exc.detail}, exc.headers)

    def read_body(self) -> bytes:
        cap = int(self.args.max_upload_mb * 1024 * 1024)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > cap:
                    self.close_connection = True
                    raise HTTPError(413, f"upload over the cap of {self.args.max_upload_mb:g} MB")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise HTTPError(411, "a Content-Length (or chunked transfer) is required")
        n = int(length)
        if n < 0:
            raise ValueError(f"Content-Length {length}")
        if n > cap:
            self.close_connection = True
            if n <= 4 * cap:  # read and drop it, so that the client, still sending, sees the 413
                while n > 0:
                    chunk = self.rfile.read(min(1 << 16, n))
                    if not chunk:
                        break
                    n -= len(chunk)
            raise HTTPError(413, self.over_cap(int(length)))
        return self.rfile.read(n)

    def over_cap(self, n: int) -> str:
        return f"upload of {n / 1e6:.1f} MB is over the cap of {self.args.max_upload_mb:g} MB"

    def handle_expect_100(self) -> bool:
        """Refuse an oversized upload before the client sends it (curl asks first)."""
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = 0
        if n > int(self.args.max_upload_mb * 1024 * 1024):
            self.close_connection = True
            self.fail(HTTPError(413, self.over_cap(n)))
            return False
        return super().handle_expect_100()

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        try:
            if path == "/healthz":
                m = self.model
                status = {"status": "ok" if m.session is not None else "loading",
                          "variant": self.cfg["variant"], "precision": self.cfg.get("precision"),
                          "input_size": self.cfg["input_size"], "device": self.args.device,
                          "queue": {"inflight": self.gate.inflight, "capacity": self.gate.capacity,
                                    "workers": self.gate.workers},
                          "model_file": m.model_file, "load_optimization": m.level,
                          "startup_s": m.startup(), "t_start_monotonic": T_START, "pid": os.getpid()}
                self.send_json(200 if m.session is not None else 503, status)
            elif path == "/api/remove":
                params = dict(parse_qsl(query))
                if not params.get("url"):
                    raise HTTPError(422, [{"type": "missing", "loc": ["query", "url"], "msg": "Field required",
                                           "input": None}])
                raise HTTPError(501, "this bundle does not fetch images by URL (it runs offline); "
                                     "POST the image as multipart field `file` instead")
            elif path in ("/", ""):
                self.send_json(200, {"variant": self.cfg["variant"], "api": ["POST /api/remove", "GET /healthz"]})
            else:
                raise HTTPError(404, "Not Found")
        except HTTPError as exc:
            self.fail(exc)

    def do_POST(self) -> None:
        t0 = time.monotonic()
        path, _, query = self.path.partition("?")
        try:
            body = self.read_body()
        except HTTPError as exc:
            return self.fail(exc)
        except (ValueError, OSError) as exc:
            self.close_connection = True
            return self.fail(HTTPError(400, f"could not read the request body ({exc})"))
        try:
            try:
                if path != "/api/remove":
                    raise HTTPError(404, "Not Found")
                self.remove(body, query, t0)
            except HTTPError as exc:
                self.fail(exc)
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as exc:  # one bad request must not take the server down
                self.log_message("error: %s: %s", type(exc).__name__, exc)
                self.fail(HTTPError(500, f"internal error: {type(exc).__name__}: {exc}"))
        except (BrokenPipeError, ConnectionResetError):  # the client left: nobody to answer
            self.close_connection = True

    def remove(self, body: bytes, query: str, t0: float) -> None:
        ctype = self.headers.get("Content-Type", "")
        params = dict(parse_qsl(query))
        if ctype.lower().startswith("multipart/form-data"):
            fields, files = parse_multipart(body, ctype)
            params.update(fields)
            data = files.get("file")
            if data is None:
                raise HTTPError(422, [{"type": "missing", "loc": ["body", "file"], "msg": "Field required",
                                       "input": None}])
        elif ctype.lower().startswith("image/") or ctype.lower() == "application/octet-stream":
            data = body
        else:
            raise HTTPError(422, [{"type": "missing", "loc": ["body", "file"], "msg": "Field required",
                                   "input": None}])
        only_mask = parse_bool("om", params.get("om"))
        for key, what in UNSUPPORTED.items():
            if parse_bool(key, params.get(key)):
                raise HTTPError(400, f"{key}=true ({what}) is not supported by this bundle: it serves "
                                     f"the model only; leave {key} unset or false")
        color = parse_color(params.get("bgc"))
        timings = {"read": time.monotonic() - t0}

        if not self.gate.enter():
            after = self.gate.retry_after()
            raise HTTPError(503, f"the server is busy ({self.gate.capacity} requests in progress or "
                                 f"queued); retry after {after} s", {"Retry-After": after})
        t_in = time.monotonic()
        done = None
        try:
            t = time.monotonic()
            try:
                rgb = load_rgb(data, self.args.max_pixels)
            except ImageError as exc:
                raise HTTPError(400, f"the upload is not a usable image: {exc}") from None
            timings["decode"] = time.monotonic() - t
            t = time.monotonic()
            x = preprocess(rgb, self.cfg["input_size"], self.cfg["preprocess"])
            timings["preprocess"] = time.monotonic() - t
            t = time.monotonic()
            self.model.ready.wait()
            with self.gate.run:
                timings["wait"] = time.monotonic() - t
                t = time.monotonic()
                pred = self.model.session.run(None, {self.model.input_name: x})[0]
                timings["inference"] = time.monotonic() - t
            t = time.monotonic()
            mask = postprocess(pred[0, 0], (rgb.shape[1], rgb.shape[0]), self.cfg["postprocess"])
            timings["postprocess"] = time.monotonic() - t
            t = time.monotonic()
            out = self.encode(rgb, mask, only_mask, color)
            timings["encode"] = time.monotonic() - t
            done = time.monotonic() - t_in
        finally:
            self.gate.leave(done)
        server_timing = ", ".join(f"{k};dur={v * 1e3:.1f}" for k, v in timings.items())
        self.send_body(200, out, "image/png", {"Server-Timing": server_timing, "X-Model": self.cfg["variant"]})

    def encode(self, rgb, mask, only_mask: bool, color) -> bytes:
        import numpy as np
        from PIL import Image

        level = self.args.png_compression
        if only_mask:
            return png_bytes(Image.fromarray(mask, mode="L"), level)
        cutout = Image.fromarray(np.dstack([rgb, mask]), mode="RGBA")
        if color is not None:  # rembg's apply_background_color
            cutout = Image.alpha_composite(Image.new("RGBA", cutout.size, color), cutout)
        return png_bytes(cutout, level)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the listen backlog: a burst of clients must not be refused by the kernel


def make_server(args, cfg: dict, model: Model) -> Server:
    handler = type("BundleHandler", (Handler,), {"model": model, "gate": Gate(args.workers, args.queue),
                                                 "args": args, "cfg": cfg})
    return Server((args.host, args.port), handler)


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    ap = argparse.ArgumentParser(description="Serve the bundled background-removal model (rembg's HTTP API).")
    ap.add_argument("--host", default=env("HOST", "127.0.0.1"),
                    help="address to bind (default 127.0.0.1; 0.0.0.0 in the Docker image)")
    ap.add_argument("--port", type=int, default=int(env("PORT", "7000")), help="port (default 7000, as rembg)")
    ap.add_argument("--config", default=os.path.join(HERE, "model.json"), help="the bundle's model.json")
    ap.add_argument("--device", default=env("DEVICE", "cpu"), help="cpu or cuda (needs onnxruntime-gpu)")
    ap.add_argument("--threads", type=int, default=int(env("THREADS", "0")),
                    help="ONNX Runtime intra-op threads (0: one per core)")
    ap.add_argument("--workers", type=int, default=int(env("WORKERS", "1")),
                    help="inferences at once (default 1: one uses every core)")
    ap.add_argument("--queue", type=int, default=int(env("QUEUE", "8")),
                    help="requests that may wait for a worker; beyond, 503 (default 8)")
    ap.add_argument("--max-upload-mb", type=float, default=float(env("MAX_UPLOAD_MB", "50")))
    ap.add_argument("--max-pixels", type=int, default=None,
                    help="the largest image decoded (default: the bundle's, as the studio's)")
    ap.add_argument("--png-compression", type=int, default=int(env("PNG_COMPRESSION", "1")),
                    help="zlib level of the PNG answers, 0-9 (default 1: fast; rembg uses 6)")
    ap.add_argument("--optimization", choices=sorted(LEVELS), default=None,
                    help="ONNX Runtime graph optimisation at load (default: the bundle's)")
    ap.add_argument("--warmup", action="store_true",
                    help="run one inference before reporting ready (measured: it does not shorten "
                         "the time to the first answer, so it is off)")
    ap.add_argument("--prepare", action="store_true",
                    help="write the model fully optimised for this CPU beside model.onnx, then exit; "
                         "later starts on this kind of CPU load it directly (faster)")
    ap.add_argument("--portable", action="store_true", help="ignore a prepared model")
    ap.add_argument("--quiet", action="store_true", help="no access log")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = read_config(args.config)
    if args.prepare:
        print(f"prepared {prepare(cfg)}")
        return 0
    if args.max_pixels is None:
        args.max_pixels = int(os.environ.get("MAX_PIXELS") or cfg.get("max_pixels", 50_000_000))
    model = Model(cfg, args)
    try:
        server = make_server(args, cfg, model)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    model.mark("listening")  # the kernel queues connections from here; serve_forever accepts them
    # the model loads beside the server: a first request's upload, decoding and resizing overlap it
    threading.Thread(target=model.load, name="model-loader", daemon=True).start()
    print(f"serving {cfg['variant']} on http://{args.host}:{server.server_address[1]} "
          f"(POST /api/remove, GET /healthz)", flush=True)

    def stop(signum, frame):  # docker stop sends SIGTERM; PID 1 has no default handler
        raise KeyboardInterrupt

    import signal

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
