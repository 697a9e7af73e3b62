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

Errors are JSON {"detail": ...} as rembg's server (FastAPI) sends them: 400 an unreadable image
or a malformed request, 408 a request too slow to arrive, 413 an upload over --max-upload-mb,
422 a missing file or a bad form value, 431 too many or too large headers, 503 when the queue or
the connections are full (with Retry-After). Every answer says how its time was spent in a
Server-Timing header.

HTTP is uvicorn (h11) and Starlette, with these limits (all flags below):
- an upload over --max-upload-mb is refused (413) as soon as it is over, chunked or not; a chunk
  size line or a header block over --max-header-kb is refused (400) without being buffered;
- more than --max-headers headers: 431;
- a request whose headers are not complete --header-timeout seconds after its connection opened
  (or after the previous answer) is closed with 408; a body that stops for --body-timeout
  seconds gets 408;
- beyond --max-connections open connections a new one is answered 503 and closed;
- a connection closed with the client still sending (a 413, a 408, a 503) is closed lingering:
  what still arrives is read and dropped (a declared body up to twice the upload cap, else 1 MB;
  at most 5 s), so the client reads the answer instead of a connection reset;
- --workers inferences run at once and --queue more requests wait; beyond, 503 at once;
- admitted requests decode, run and encode only while the images in flight hold at most
  --max-inflight-mp megapixels together (one bigger image runs alone), so memory is bounded by
  pixels, not only by requests; uploads wait on disk, not in memory.

Start-up is kept lean: the port is bound at once and a loader thread imports the runtime and
loads the model while the HTTP stack is imported, so a first request's upload, decoding and
resizing overlap the model load.

Needs the packages in requirements.txt; prepost.py (beside this file) is the studio's own
pre/post-processing and image decoding. It imports neither the studio nor torch.
"""

from __future__ import annotations

import time

T_START = time.monotonic()  # after the interpreter's own start-up: the phases count from here

import argparse  # noqa: E402  (after T_START on purpose)
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections import deque  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # `python -I serve.py` does not put the script's folder on the path
    sys.path.insert(0, HERE)

import prepost  # noqa: E402  (beside this file: the studio's own pre/post-processing and decoding)

LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
          "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
TRUE = {"1", "on", "t", "true", "y", "yes"}  # what rembg's FastAPI (pydantic) reads as booleans
FALSE = {"0", "off", "f", "false", "n", "no"}
UNSUPPORTED = {"a": "alpha matting", "ppm": "mask post-processing", "dc": "edge decontamination",
               "vm": "ViTMatte refinement"}
CAP_HINT = "--max-pixels or MAX_PIXELS raises it"
SPOOL_BYTES = 1 << 20  # an upload beyond this waits in a temporary file, not in memory


class HTTPError(Exception):
    def __init__(self, status: int, detail, headers: dict | None = None, close: bool = False):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, dict(headers or {})
        if close:  # the rest of the request is not read: the connection cannot be reused
            self.headers["Connection"] = "close"


def read_config(path: str) -> dict:
    """model.json, with its pre- and post-processing parsed (an unknown key is an error)."""
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    if cfg.get("format") != 1:
        raise SystemExit(f"error: {path}: unknown bundle format {cfg.get('format')!r}")
    cfg.setdefault("runtime", "onnxruntime")  # bundles exported before runtimes were named
    if cfg["runtime"] not in RUNTIMES:
        raise SystemExit(f"error: {path}: runtime {cfg['runtime']!r} is not one this server has "
                         f"({', '.join(RUNTIMES)})")
    try:
        cfg["preprocess"] = prepost.Preprocess.from_dict(cfg.get("preprocess"))
        cfg["postprocess"] = prepost.Postprocess.from_dict(cfg.get("postprocess"))
    except prepost.ConfigError as exc:
        raise SystemExit(f"error: {path}: {exc}") from None
    return cfg


# --- runtimes: what loads and runs the model -----------------------------------------------------
# One class per runtime, named by model.json's "runtime"; each has load() (in the loader thread),
# run(x) -> the first output, prepare() (--prepare) and the fields /healthz reports.


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (/proc/cpuinfo); None where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.partition(":")[2].split())
    except OSError:
        return None
    return set()


def isa_of(names: tuple[str, ...]) -> str:
    flags = cpu_flags()
    return "unknown" if flags is None else "-".join(x for x in names if x in flags) or "base"


def cpu_key(ort_version: str) -> str:
    """What a fully optimised CPU model depends on: ONNX Runtime's version, the architecture and
    the vector extensions that set its NCHWc block size (AVX-512 packs 16 channels, AVX2 8)."""
    isa = isa_of(("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma", "avx", "asimd", "sve"))
    return f"ort{ort_version}-{os.uname().machine}-{isa}"


def prepared_path(cfg: dict, ort_version: str) -> str:
    return os.path.join(HERE, f"model.{cfg['model_sha256'][:12]}.{cpu_key(ort_version)}.onnx")


class OrtRuntime:
    """ONNX Runtime: one session; on a CPU, the model `--prepare` optimised for it when present."""

    name = "onnxruntime"

    def __init__(self, cfg: dict, args):
        self.cfg, self.args = cfg, args
        self.session = None
        self.input_name: str | None = None
        self.model_file: str | None = None
        self.level: str | None = None

    def session_options(self, ort, level: str):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
        if self.args.threads > 0:
            opts.intra_op_num_threads = self.args.threads
            opts.inter_op_num_threads = 1
        # the variant's own settings (its zoo entry's options.ort), as the studio applies them
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
        if extra.get("dynamic_block_base"):
            opts.add_session_config_entry("session.dynamic_block_base", str(int(extra["dynamic_block_base"])))
        if "denormal_as_zero" in extra:
            opts.add_session_config_entry("session.set_denormal_as_zero", "1" if extra["denormal_as_zero"] else "0")
        opts.log_severity_level = 3
        return opts

    def choose_model(self, ort_version: str) -> tuple[str, str]:
        """This CPU's prepared model (`--prepare`) when there is one, loaded as it is; else the
        portable model.onnx, optimised further at load."""
        if self.args.device == "cpu" and not self.args.optimization and not self.args.portable:
            prepared = prepared_path(self.cfg, ort_version)
            if os.path.isfile(prepared):
                return prepared, "disable"
        level = self.args.optimization or self.cfg["ort"]["load_optimization"]
        return os.path.join(HERE, self.cfg["model_file"]), level

    def load(self, mark) -> None:
        import onnxruntime as ort

        mark("runtime_imported")
        providers = ["CPUExecutionProvider"]
        if self.args.device.startswith("cuda"):
            if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels
                ort.preload_dlls()
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        path, level = self.choose_model(ort.__version__)
        session = ort.InferenceSession(path, sess_options=self.session_options(ort, level), providers=providers)
        if providers[0] == "CUDAExecutionProvider" and "CUDAExecutionProvider" not in session.get_providers():
            raise RuntimeError("CUDA was asked for but onnxruntime fell back to CPU "
                               "(is onnxruntime-gpu installed, and the CUDA/cuDNN libraries?)")
        self.model_file, self.level = os.path.basename(path), level
        self.input_name = session.get_inputs()[0].name
        self.session = session
        mark("session_ready")

    def run(self, x):
        return self.session.run(None, {self.input_name: x})[0]

    def prepare(self) -> str:
        """Optimise the portable model as a start would (ORT_ENABLE_ALL: NCHWc layouts for this CPU)
        and save it beside; later starts on a CPU of the same kind load it with no optimisation pass."""
        import onnxruntime as ort

        dst = prepared_path(self.cfg, ort.__version__)
        opts = self.session_options(ort, self.cfg["ort"]["load_optimization"])  # a start's level: usually all
        opts.optimized_model_filepath = dst + ".part"
        ort.InferenceSession(os.path.join(HERE, self.cfg["model_file"]), sess_options=opts,
                             providers=["CPUExecutionProvider"])
        os.replace(dst + ".part", dst)
        return dst


# OpenVINO's CPU plugin: the instruction sets its compiled graph depends on (the kernels and the
# precisions it picks: VNNI and AMX for int8, AVX512-BF16 and AMX for bf16; AVX-512 vs AVX2 blocks)
OV_ISA = ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
          "amx_tile", "amx_int8", "amx_bf16", "avx_vnni", "avx2", "fma", "avx", "asimd", "sve")


def compiled_path(cfg: dict, ov_version: str) -> str:
    """The compiled model for this OpenVINO version and this kind of CPU: a blob from another
    version or CPU is never tried (the plugin's blobs are specific to both)."""
    isa = isa_of(OV_ISA)
    version = ov_version.split("-")[0]
    ov = cfg["openvino"]
    return os.path.join(HERE, f"model.{cfg['model_sha256'][:8]}{cfg['weights_sha256'][:8]}."
                              f"ov{version}-{ov['precision']}-{os.uname().machine}-{isa}.blob")


def import_openvino():
    """`import openvino`, without its model converter: the package's __init__ imports
    `openvino.tools.ovc` (telemetry, urllib: 60 of its 90 ms here) inside a try/except
    ImportError, and a server converts nothing. A None in sys.modules makes that import fail
    at once; the entry is removed after, so a later real import of ovc still works."""
    name = "openvino.tools.ovc"
    skip = name not in sys.modules
    if skip:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import openvino as ov
    finally:
        if skip and sys.modules.get(name, 0) is None:
            del sys.modules[name]
    return ov


class OpenVinoRuntime:
    """OpenVINO's CPU plugin: the IR (first output only) compiled with the variant's settings; on
    a CPU that has one, the compiled model shipped or `--prepare`d beside it is imported instead
    (no compilation), with a fallback to compiling when the plugin refuses it."""

    name = "openvino"
    HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}

    def __init__(self, cfg: dict, args):
        self.cfg, self.args = cfg, args
        self.compiled = None
        self.model_file: str | None = None
        self.level: str | None = None  # "compiled" or "imported" (/healthz)
        self.fallback: str | None = None  # why a compiled blob was not used
        self._free: list = []  # idle infer requests: one per concurrent inference
        self._blob = None
        self._lock = threading.Lock()

    def config(self) -> dict:
        """The compile (and import) properties, as the studio's openvino runner sets them."""
        o = self.cfg["openvino"]
        cfg = {"PERFORMANCE_HINT": self.HINTS[o.get("hint", "latency")],
               "INFERENCE_PRECISION_HINT": o.get("precision", "f32")}
        if self.args.threads > 0:
            cfg["INFERENCE_NUM_THREADS"] = self.args.threads
        if o.get("streams"):
            cfg["NUM_STREAMS"] = int(o["streams"])
        return cfg

    def load(self, mark) -> None:
        if self.args.device != "cpu":
            raise RuntimeError(f"device {self.args.device!r}: this bundle runs OpenVINO on the CPU only")
        ov = import_openvino()
        mark("runtime_imported")
        core = ov.Core()
        blob = compiled_path(self.cfg, ov.__version__)
        if not self.args.portable and os.path.isfile(blob):
            try:
                import numpy as np

                # mapped, not read into memory first (copy-on-write: the Tensor wants a writable
                # array; nothing writes to it); kept referenced while the model lives
                self._blob = np.memmap(blob, dtype=np.uint8, mode="c")
                self.compiled = core.import_model(ov.Tensor(self._blob, shared_memory=True), "CPU",
                                                  self.config())
                self.model_file, self.level = os.path.basename(blob), "imported"
            except Exception as exc:  # a blob this plugin build cannot take: compile instead
                self.fallback = f"{type(exc).__name__}: {exc}"[:300]
                print(f"warning: {os.path.basename(blob)} could not be imported ({self.fallback}); "
                      f"compiling {self.cfg['model_file']}", file=sys.stderr, flush=True)
        if self.compiled is None:
            path = os.path.join(HERE, self.cfg["model_file"])
            self.compiled = core.compile_model(path, "CPU", self.config())
            self.model_file, self.level = os.path.basename(path), "compiled"
        self._free.append(self.compiled.create_infer_request())
        mark("session_ready")

    def run(self, x):
        with self._lock:
            request = self._free.pop() if self._free else self.compiled.create_infer_request()
        try:
            request.infer({0: x}, share_inputs=True)
            # a copy: the request's output buffer is overwritten by its next inference
            return request.get_output_tensor(0).data.copy()
        finally:
            with self._lock:
                self._free.append(request)

    def prepare(self) -> str:
        """Compile the IR for this CPU and save the compiled model beside it; later starts on a
        CPU of the same kind (and the same OpenVINO) import it instead of compiling."""
        ov = import_openvino()

        dst = compiled_path(self.cfg, ov.__version__)
        compiled = ov.Core().compile_model(os.path.join(HERE, self.cfg["model_file"]), "CPU", self.config())
        data = compiled.export_model()  # io.BytesIO in this OpenVINO, bytes in older ones
        with open(dst + ".part", "wb") as f:
            f.write(data.getvalue() if hasattr(data, "getvalue") else data)
        os.replace(dst + ".part", dst)
        return dst


RUNTIMES = {"onnxruntime": OrtRuntime, "openvino": OpenVinoRuntime}


class Model:
    """The model, loaded by a thread while the port is already open."""

    def __init__(self, cfg: dict, args):
        self.cfg, self.args = cfg, args
        self.runtime = RUNTIMES[cfg["runtime"]](cfg, args)
        self.loaded = False
        self.ready = threading.Event()
        self.marks: dict[str, float] = {"script": T_START}

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()

    def load(self) -> None:
        try:
            # The runtime first: a first request imports Pillow and decodes its image meanwhile,
            # in another thread (the runtimes release the GIL while they build the model).
            self.runtime.load(self.mark)
            prepost.configure_pillow(self.args.max_pixels)  # if no request has yet
            self.mark("imaging_ready")
            if self.args.warmup:
                import numpy as np

                w, h = self.cfg["input_size"]
                self.runtime.run(np.zeros((1, 3, h, w), dtype=np.float32))
                self.mark("warmed_up")
            self.loaded = True
        except BaseException as exc:  # the server cannot serve without its model: exit loudly
            print(f"error: the model could not be loaded: {type(exc).__name__}: {exc}", file=sys.stderr,
                  flush=True)
            os._exit(3)
        finally:
            self.ready.set()

    def startup(self) -> dict:
        """Seconds from the script's first line to each start-up phase."""
        return {k: round(v - T_START, 4) for k, v in self.marks.items() if k != "script"}


# --- admission: a bounded queue, and a budget of pixels in flight ---------------------------------


class Gate:
    """`workers` inferences at once and `queue` more requests waiting (503 beyond); and the pixels
    of the images being decoded, run and encoded held under `pixel_budget` together, first come
    first served (an image over the budget alone runs when nothing else does). Used from the
    event loop's thread only."""

    def __init__(self, workers: int, queue: int, pixel_budget: int):
        import asyncio

        self.workers = max(1, workers)
        self.capacity = self.workers + max(0, queue)
        self.pixel_budget = max(1, pixel_budget)
        self.run = asyncio.Semaphore(self.workers)
        self.inflight = 0
        self.pixels = 0
        self.service_s = 1.0  # moving average of a request's time, for Retry-After
        self._waiting: deque = deque()

    def enter(self) -> bool:
        if self.inflight >= self.capacity:
            return False
        self.inflight += 1
        return True

    def leave(self, seconds: float | None) -> None:
        self.inflight -= 1
        if seconds is not None:
            self.service_s = 0.8 * self.service_s + 0.2 * seconds

    def retry_after(self) -> int:
        return max(1, math.ceil(self.service_s * self.inflight / self.workers))

    def _fits(self, n: int) -> bool:
        return self.pixels == 0 or self.pixels + n <= self.pixel_budget

    async def admit(self, n: int) -> None:
        """Wait until `n` more pixels fit (in arrival order), then hold them."""
        import asyncio

        if not self._waiting and self._fits(n):
            self.pixels += n
            return
        ticket = asyncio.get_running_loop().create_future()
        self._waiting.append((n, ticket))
        try:
            await ticket
        except BaseException:  # the client left while waiting: give back what it was granted
            if ticket.done() and not ticket.cancelled():
                self.release(n)
            else:
                self._waiting.remove((n, ticket))
                self._wake()
            raise

    def release(self, n: int) -> None:
        self.pixels -= n
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self._fits(self._waiting[0][0]):
            n, ticket = self._waiting.popleft()
            if not ticket.done():
                self.pixels += n
                ticket.set_result(None)


# --- the request's pieces --------------------------------------------------------------------------


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


def missing_file() -> HTTPError:
    return HTTPError(422, [{"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": None}])


def png_bytes(img, compress_level: int) -> memoryview:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getbuffer()  # the buffer itself: getvalue() would copy it (100 MB for a 49 MP cut-out)


def encode(rgb, mask, only_mask: bool, color, level: int) -> memoryview:
    """The answer's PNG: the mask, or the cut-out (the image with the mask as its alpha)."""
    import numpy as np
    from PIL import Image

    if only_mask:
        return png_bytes(Image.fromarray(mask, mode="L"), level)
    # one RGBA array that Pillow shares rather than copies (Image.fromarray of RGB copies into 4
    # bytes a pixel, and putalpha then converts it again: two more copies of a 50 MP image)
    rgba = np.empty((*mask.shape, 4), np.uint8)
    for rows in prepost.row_bands(*mask.shape):
        rgba[rows, :, :3] = rgb[rows]
        rgba[rows, :, 3] = mask[rows]
    cutout = Image.fromarray(rgba)  # (H, W, 4) uint8: RGBA, sharing the array
    if color is not None:  # rembg's apply_background_color
        cutout = Image.alpha_composite(Image.new("RGBA", cutout.size, color), cutout)
    return png_bytes(cutout, level)


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc's malloc_trim; nothing elsewhere), as
    studio.memory does: a large image's buffers, freed in a worker thread's malloc arena, would
    otherwise stay counted in the server's RSS."""
    import contextlib
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


TRIM_PIXELS = 4_000_000  # after an image this large, give its memory back


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


class Limits:
    """ASGI middleware: the header count, the upload cap (declared or counted as it arrives,
    chunked or not) and the body's idle timeout, before any of the body is kept."""

    def __init__(self, app, args):
        self.app, self.args = app, args
        self.cap = int(args.max_upload_mb * 1024 * 1024)

    async def __call__(self, scope, receive, send):
        import asyncio

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if len(scope["headers"]) > self.args.max_headers:
            return await send_error(send, HTTPError(431, f"more than {self.args.max_headers} headers", close=True))
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    n = int(value)
                except ValueError:
                    return await send_error(send, HTTPError(400, "a bad Content-Length", close=True))
                if n > self.cap:  # refused before the client sends it (curl waits for 100-continue)
                    return await send_error(send, HTTPError(413, over_cap(self.args, n), close=True))
        received = 0
        timeout = self.args.body_timeout

        async def limited():
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except TimeoutError:
                raise BodyTimeout from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.cap:
                    raise BodyTooLarge
            return message

        await self.app(scope, limited, send)


def over_cap(args, n: int | None = None) -> str:
    what = f"upload of {n / 1e6:.1f} MB" if n is not None else "upload"
    return f"{what} is over the cap of {args.max_upload_mb:g} MB"


async def send_error(send, exc: HTTPError) -> None:
    body = json.dumps({"detail": exc.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- the app ------------------------------------------------------------------------------------------


def make_app(args, cfg: dict, model: Model, gate: Gate):
    """The Starlette app (routes, error answers) inside the limits middleware."""
    import tempfile

    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def answer(status: int, payload, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(payload, status_code=status, headers={k: str(v) for k, v in (headers or {}).items()})

    async def on_http_error(request, exc: HTTPError):
        return answer(exc.status, {"detail": exc.detail}, exc.headers)

    async def on_too_large(request, exc):
        return answer(413, {"detail": over_cap(args)}, {"Connection": "close"})

    async def on_body_timeout(request, exc):
        return answer(408, {"detail": f"the request body stalled for {args.body_timeout:g} s"},
                      {"Connection": "close"})

    async def on_disconnect(request, exc):
        return Response(status_code=400)  # nobody is left to read it

    async def on_internal(request, exc):  # one bad request must not take the server down
        return answer(500, {"detail": f"internal error: {type(exc).__name__}: {exc}"})

    async def health(request):
        ok = model.loaded
        rt = model.runtime
        return answer(200 if ok else 503, {
            "status": "ok" if ok else "loading", "variant": cfg["variant"], "precision": cfg.get("precision"),
            "runtime": rt.name, "input_size": cfg["input_size"], "device": args.device,
            "queue": {"inflight": gate.inflight, "capacity": gate.capacity, "workers": gate.workers,
                      "pixels_inflight": gate.pixels, "pixel_budget": gate.pixel_budget},
            "model_file": rt.model_file, "load_optimization": getattr(rt, "level", None),
            **({"compiled_fallback": rt.fallback} if getattr(rt, "fallback", None) else {}),
            "startup_s": model.startup(), "t_start_monotonic": T_START, "pid": os.getpid()})

    async def index(request):
        return answer(200, {"variant": cfg["variant"], "api": ["POST /api/remove", "GET /healthz"]})

    async def remove_get(request):
        if not request.query_params.get("url"):
            raise HTTPError(422, [{"type": "missing", "loc": ["query", "url"], "msg": "Field required",
                                   "input": None}])
        raise HTTPError(501, "this bundle does not fetch images by URL (it runs offline); "
                             "POST the image as multipart field `file` instead")

    async def read_upload(request) -> tuple[dict, object]:
        """The form fields and the image's file (spooled: in memory up to 1 MB, then on disk)."""
        params = dict(request.query_params)
        ctype = request.headers.get("content-type", "").lower()
        if ctype.startswith("multipart/form-data"):
            # a malformed body is Starlette's HTTPException 400 (answered by on_starlette_error)
            form = await request.form(max_files=4, max_fields=64, max_part_size=64 * 1024)
            upload = None
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if key == "file" and upload is None:
                        upload = value.file
                else:
                    params[key] = value
            if upload is None and isinstance(form.get("file"), str):  # a file field sent without a filename
                upload = tempfile.SpooledTemporaryFile(SPOOL_BYTES)  # noqa: SIM115 (remove() closes it)
                upload.write(form["file"].encode("utf-8", "surrogateescape"))
            if upload is None:
                raise missing_file()
            return params, upload
        if ctype.startswith("image/") or ctype == "application/octet-stream":
            upload = tempfile.SpooledTemporaryFile(SPOOL_BYTES)  # noqa: SIM115 (remove() closes it)
            try:
                async for chunk in request.stream():
                    upload.write(chunk)
            except BaseException:
                upload.close()
                raise
            return params, upload
        raise missing_file()

    def decode_and_prepare(upload, timings: dict):
        t = time.monotonic()
        upload.seek(0)
        data = upload.read()
        try:
            rgb = prepost.decode(data, args.max_pixels, CAP_HINT)
        except prepost.ImageError as exc:
            raise HTTPError(400, f"the upload is not a usable image: {exc}") from None
        del data
        timings["decode"] = time.monotonic() - t
        t = time.monotonic()
        x = prepost.preprocess(rgb, cfg["input_size"], cfg["preprocess"])
        timings["preprocess"] = time.monotonic() - t
        return rgb, x

    def finish(rgb, pred, only_mask: bool, color, timings: dict) -> memoryview:
        t = time.monotonic()
        mask = prepost.postprocess(pred[0, 0], (rgb.shape[1], rgb.shape[0]), cfg["postprocess"])
        timings["postprocess"] = time.monotonic() - t
        t = time.monotonic()
        out = encode(rgb, mask, only_mask, color, args.png_compression)
        timings["encode"] = time.monotonic() - t
        return out

    def peek(upload) -> int:
        upload.seek(0)
        size = prepost.peek_size(upload)
        # an image Pillow cannot size is refused by decode before any pixel is made: no budget
        return size[0] * size[1] if size else 0

    async def remove(request):
        t0 = time.monotonic()
        params, upload = await read_upload(request)
        try:
            return await process(params, upload, t0)
        finally:
            upload.close()  # its temporary file, if it had one, goes with it

    async def process(params: dict, upload, t0: float):
        only_mask = parse_bool("om", params.get("om"))
        for key, what in UNSUPPORTED.items():
            if parse_bool(key, params.get(key)):
                raise HTTPError(400, f"{key}=true ({what}) is not supported by this bundle: it serves "
                                     f"the model only; leave {key} unset or false")
        color = parse_color(params.get("bgc"))
        timings = {"read": time.monotonic() - t0}
        if not gate.enter():
            after = gate.retry_after()
            raise HTTPError(503, f"the server is busy ({gate.capacity} requests in progress or "
                                 f"queued); retry after {after} s", {"Retry-After": after})
        t_in, done = time.monotonic(), None
        try:
            pixels = await run_in_threadpool(peek, upload)
            t = time.monotonic()
            await gate.admit(pixels)
            timings["admit"] = time.monotonic() - t
            try:
                rgb, x = await run_in_threadpool(decode_and_prepare, upload, timings)
                upload.close()  # decoded: its bytes are not needed any more
                t = time.monotonic()
                if not model.ready.is_set():
                    await run_in_threadpool(model.ready.wait)
                async with gate.run:
                    timings["wait"] = time.monotonic() - t
                    t = time.monotonic()
                    pred = await run_in_threadpool(model.runtime.run, x)
                    timings["inference"] = time.monotonic() - t
                del x
                out = await run_in_threadpool(finish, rgb, pred, only_mask, color, timings)
                del rgb, pred
            finally:
                gate.release(pixels)
            done = time.monotonic() - t_in
        finally:
            gate.leave(done)
        server_timing = ", ".join(f"{k};dur={v * 1e3:.1f}" for k, v in timings.items())
        trim = BackgroundTask(release_freed_memory) if pixels >= TRIM_PIXELS else None  # after the answer
        return Response(out, media_type="image/png", background=trim,
                        headers={"Server-Timing": server_timing, "X-Model": cfg["variant"]})

    async def on_starlette_error(request, exc):  # 404, 405, a malformed multipart body (400)
        headers = dict(exc.headers or {})
        if exc.status_code == 400:  # the rest of the body is not read: the connection cannot be reused
            headers["Connection"] = "close"
        return answer(exc.status_code, {"detail": exc.detail}, headers)

    app = Starlette(routes=[Route("/api/remove", remove, methods=["POST"]),
                            Route("/api/remove", remove_get, methods=["GET"]),
                            Route("/healthz", health, methods=["GET"]),
                            Route("/", index, methods=["GET"])],
                    exception_handlers={HTTPError: on_http_error, BodyTooLarge: on_too_large,
                                        BodyTimeout: on_body_timeout, ClientDisconnect: on_disconnect,
                                        StarletteHTTPException: on_starlette_error, Exception: on_internal})
    return Limits(app, args)


def raw_answer(status: str, detail: str, extra: str = "") -> bytes:
    """A whole JSON answer that closes the connection, written by the protocol itself (before or
    instead of a request the app would see)."""
    body = json.dumps({"detail": detail}).encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Connection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def make_protocol(args):
    """uvicorn's h11 protocol with a deadline for a request's headers and a cap on connections."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    timeout_answer = raw_answer("408 Request Timeout", "the request headers took too long to send")
    busy_answer = raw_answer("503 Service Unavailable", "too many connections; retry", "Retry-After: 1\r\n")
    linger_cap = 2 * int(args.max_upload_mb * 1024 * 1024)

    class Protocol(H11Protocol):
        head_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.transport = LingeringClose(transport, self.loop, self.linger_budget)
            if len(self.connections) > args.max_connections:  # over the cap: answer and close at once
                self.transport.write(busy_answer)
                self.transport.close()
                return
            self.arm()

        def linger_budget(self) -> int:
            """Bytes to drop before the socket closes: a refused upload that declared its length
            (up to twice the cap) is read to its end, so its client gets the answer; anything
            else (chunked, a flood, a bad request) gets LINGER_BYTES."""
            for name, value in getattr(self, "headers", None) or []:
                if name == b"content-length" and value.isdigit() and int(value) <= linger_cap:
                    return max(int(value), LINGER_BYTES)
            return LINGER_BYTES

        def data_received(self, data: bytes) -> None:
            if self.transport.lingering:  # answered and closing: what still arrives is dropped
                self.transport.dropped(len(data))
                return
            super().data_received(data)

        def arm(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
            self.head_timer = self.loop.call_later(args.header_timeout, self.head_expired)

        def head_expired(self) -> None:
            # still no complete request head since the connection opened or the last answer
            waiting = self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)
            if waiting and not self.transport.is_closing():
                self.transport.write(timeout_answer)
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self.arm()

        def connection_lost(self, exc) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
            self.transport.closed()
            super().connection_lost(exc)

    return Protocol


LINGER_S = 5.0  # as nginx's lingering_timeout
LINGER_BYTES = 1 << 20


class LingeringClose:
    """The connection's transport as uvicorn sees it, with a lingering close (as nginx does):
    close() sends the answer and a FIN, then reads and drops what the client is still sending
    until it closes, for at most LINGER_S. Closing a socket with unread bytes in it resets the
    connection, and a client still uploading (a 413, a 503) would lose the answer. At most
    budget() bytes are dropped so; then the socket closes."""

    def __init__(self, transport, loop, budget):
        self._transport, self._loop, self._budget_of = transport, loop, budget
        self._budget = 0
        self.lingering = False
        self._timer = None

    def __getattr__(self, name: str):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.is_closing():
            return
        self.lingering = True
        self._budget = self._budget_of()
        try:
            self._transport.write_eof()  # after what is buffered: the answer arrives whole
            self._transport.resume_reading()  # uvicorn may have paused it mid-upload
        except (OSError, RuntimeError, NotImplementedError):
            self._transport.close()
            return
        self._timer = self._loop.call_later(LINGER_S, self._transport.close)

    def dropped(self, n: int) -> None:
        self._budget -= n
        if self._budget < 0:
            self._transport.close()

    def closed(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, made before anything heavy is imported: the kernel queues a first
    client's connection (and its upload, up to the socket buffers) while the server starts."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # a burst of clients must not be refused by the kernel
    sock.set_inheritable(True)
    return sock


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    ap = argparse.ArgumentParser(description="Serve the bundled background-removal model (rembg's HTTP API).")
    ap.add_argument("--host", default=env("HOST", "127.0.0.1"),
                    help="address to bind (default 127.0.0.1; 0.0.0.0 in the Docker image)")
    ap.add_argument("--port", type=int, default=int(env("PORT", "7000")), help="port (default 7000, as rembg)")
    ap.add_argument("--config", default=os.path.join(HERE, "model.json"), help="the bundle's model.json")
    ap.add_argument("--device", default=env("DEVICE", "cpu"), help="cpu or cuda (needs onnxruntime-gpu)")
    ap.add_argument("--threads", type=int, default=int(env("THREADS", "0")),
                    help="the runtime's intra-op threads (0: one per core)")
    ap.add_argument("--workers", type=int, default=int(env("WORKERS", "1")),
                    help="inferences at once (default 1: one uses every core)")
    ap.add_argument("--queue", type=int, default=int(env("QUEUE", "8")),
                    help="requests that may wait for a worker; beyond, 503 (default 8)")
    ap.add_argument("--max-upload-mb", type=float, default=float(env("MAX_UPLOAD_MB", "50")),
                    help="the largest upload, chunked or not (default 50; beyond: 413)")
    ap.add_argument("--max-pixels", type=int, default=None,
                    help="the largest image decoded (default: the bundle's, as the studio's)")
    ap.add_argument("--max-inflight-mp", type=float, default=float(env("MAX_INFLIGHT_MP", "60")),
                    help="megapixels decoded, run and encoded at once, all requests together (default 60: "
                         "one 50 MP image, or many small ones); the rest wait their turn")
    ap.add_argument("--max-connections", type=int, default=int(env("MAX_CONNECTIONS", "64")),
                    help="open connections; a new one beyond is answered 503 and closed (default 64)")
    ap.add_argument("--max-header-kb", type=int, default=int(env("MAX_HEADER_KB", "32")),
                    help="the request line and headers together, and a chunk size line (default 32 KB)")
    ap.add_argument("--max-headers", type=int, default=int(env("MAX_HEADERS", "100")),
                    help="header lines in a request (default 100; beyond: 431)")
    ap.add_argument("--header-timeout", type=float, default=float(env("HEADER_TIMEOUT", "10")),
                    help="seconds a client has to send a request's headers (default 10)")
    ap.add_argument("--body-timeout", type=float, default=float(env("BODY_TIMEOUT", "30")),
                    help="seconds an upload may stall before it is dropped with 408 (default 30)")
    ap.add_argument("--png-compression", type=int, default=int(env("PNG_COMPRESSION", "1")),
                    help="zlib level of the PNG answers, 0-9 (default 1: fast; rembg uses 6)")
    ap.add_argument("--optimization", choices=sorted(LEVELS), default=None,
                    help="ONNX Runtime graph optimisation at load (default: the bundle's; onnxruntime bundles)")
    ap.add_argument("--warmup", action="store_true",
                    help="run one inference before reporting ready (measured: it does not shorten "
                         "the time to the first answer, so it is off)")
    ap.add_argument("--prepare", action="store_true",
                    help="write the model fully optimised (ONNX Runtime) or compiled (OpenVINO) for this CPU "
                         "beside the model, then exit; later starts on this kind of CPU load it directly (faster)")
    ap.add_argument("--portable", action="store_true",
                    help="ignore a prepared model or compiled blob: load the portable model")
    ap.add_argument("--quiet", action="store_true", help="no access log")
    args = ap.parse_args(argv)
    for name in ("header_timeout", "body_timeout"):
        if not 0 < getattr(args, name) <= 30:
            ap.error(f"--{name.replace('_', '-')} must be in (0, 30] seconds")
    return args


def make_server(args, cfg: dict, model: Model):
    """The uvicorn server for `args` (not started); its gate is `server.gate`."""
    import logging

    import uvicorn

    gate = Gate(args.workers, args.queue, int(args.max_inflight_mp * 1e6))
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = uvicorn.Config(make_app(args, cfg, model, gate), host=args.host, port=args.port,
                            http=make_protocol(args), lifespan="off", log_config=None,
                            log_level="warning" if args.quiet else "info", access_log=not args.quiet,
                            proxy_headers=False,
                            server_header=False, h11_max_incomplete_event_size=args.max_header_kb * 1024,
                            timeout_keep_alive=5, timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    server.gate = gate  # type: ignore[attr-defined]
    return server


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = read_config(args.config)
    if args.max_pixels is None:
        args.max_pixels = int(os.environ.get("MAX_PIXELS") or cfg.get("max_pixels", 50_000_000))
    model = Model(cfg, args)
    if args.prepare:
        print(f"prepared {model.runtime.prepare()}")
        return 0
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    model.mark("listening")  # the kernel queues connections from here
    # the model loads beside the server: a first request's upload, decoding and resizing overlap it
    loader = threading.Thread(target=model.load, name="model-loader", daemon=True)
    loader.start()
    # the runtime's import first, alone: importing the HTTP stack beside it would slow both (the GIL)
    while "runtime_imported" not in model.marks and loader.is_alive():
        time.sleep(0.002)
    server = make_server(args, cfg, model)
    model.mark("http_ready")
    print(f"serving {cfg['variant']} on http://{args.host}:{sock.getsockname()[1]} "
          f"(POST /api/remove, GET /healthz)", flush=True)

    def stopped(signum, frame):
        # uvicorn stops gracefully on SIGTERM (docker stop) and SIGINT, then raises the signal
        # again for the handler it found: this one, so the process ends cleanly with 0
        raise SystemExit(0)

    import signal

    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, stopped)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
