"""The benchmark's jobs on a Ray cluster: the same `iter_job` as the local executor, run by
worker actors spread over the nodes. Ray is imported only when this executor is used.

- **Resources.** A job (one variant) asks, per worker, for `threads` CPUs (threads 0: the
  smallest node's CPU count, so the runtime's default thread count does not oversubscribe a
  node) and one GPU when the run is on CUDA. A worker is an actor holding exactly that
  reservation. Every variant of a run has the same shape, so a worker serves the variants one
  after another and keeps each runner loaded across its chunks (the equivalent of an actor
  per variant per node; the runner is freed once the variant is done).
- **Work.** Each job's images are cut into chunks; a ready worker takes the next chunk from
  the queue, with two chunks in flight so it never waits on the driver. Results stream back
  image by image (a generator method), so a dead worker loses only the image it was on.
- **Images.** A worker whose node sees the dataset's files (checked once, by the sha256 of the
  first image) reads them there, each image checked against the driver's sha256 ("shared
  storage"). For the others the driver puts each image's encoded bytes into Ray's object
  store once per run (the embedded sample: its decoded pixels).
- **Mattes** come back to the driver as 8-bit arrays (what the cache stores). Only the driver
  writes the cache and the outputs, so a run resumes on either executor.
- **Faults.** Ray places the actors and detects a dead worker or node (`ActorDiedError` and
  friends). The driver puts the images that worker had not returned back at the head of the
  queue and asks Ray for a replacement worker, which Ray places wherever there is room. An
  image on which workers die three times becomes an error for that image.
- **Cold start** is measured once per node kind, in a fresh subprocess on a node of that kind
  (`studio.bench.coldstart`, as on the local executor).

Latency is recorded with the node kind that measured it (`node_kind()`: CPU model and core
count, plus the GPU on CUDA runs); the driver never pools a p95 over node kinds.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from studio.bench.environment import package_versions
from studio.bench.executor import (
    ImageResult,
    Job,
    JobReport,
    OnEvent,
    OnImage,
    OnJobDone,
    TimingRequest,
    iter_job,
    load_average,
    node_kind,
    time_candidates,
)
from studio.errors import StudioError

IN_FLIGHT = 2  # chunks queued on a worker: the next one starts while the driver reads the last
REACH_TIMEOUT_S = 5.0  # a TCP connect to the cluster's address before ray.init
CONNECT_TIMEOUT_S = 18.0  # ray.init itself: with the imports and the TCP check, a refusal within 30 s
MAX_ATTEMPTS = 3  # workers that may die on one image before it is reported as an error
WAIT_S = 2.0  # the driver's longest sleep between looks at the cluster
PROBE_PACKAGES = ("numpy", "pillow", "onnxruntime", "onnxruntime-gpu", "torch", "opencv-python-headless",
                  "matting-studio", "ray")
INSTALL_HINT = "pip install 'matting-studio[ray]' (scripts/setup.sh installs it)"


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a Ray address ("HOST:PORT", "ray://HOST:PORT"), None for the ones Ray
    resolves itself ("auto", "local")."""
    rest = address.strip()
    if "://" in rest:
        rest = rest.split("://", 1)[1]
    rest = rest.rstrip("/")
    if rest in ("auto", "local", ""):
        return None
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise StudioError(f"Ray address {address!r} is not HOST:PORT (or ray://HOST:PORT, or auto)")
    return host.strip("[]") or "127.0.0.1", int(port)


def check_reachable(address: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Refuse an address nothing answers on, at once and by name (a TCP connect to its port):
    `ray.init` would otherwise retry it for minutes with warnings and no error."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout_s):
            return
    except TimeoutError:
        why = f"no answer within {timeout_s:g} s"
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    raise StudioError(f"cannot reach the Ray cluster at {address} ({why}): start it (`ray start --head`), or "
                      "leave out --ray-address / STUDIO_RAY_ADDRESS to run on a local cluster")


def _init_within(ray: Any, timeout_s: float, **kw: Any) -> None:
    """`ray.init(**kw)`, refused after `timeout_s` (something answers on the port but it is not a
    Ray cluster that lets us in): the connection is tried in a thread the driver stops waiting on."""
    import threading

    box: dict[str, BaseException | None] = {"error": None}

    def go() -> None:
        try:
            ray.init(**kw)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    # off the main thread Ray only skips its SIGTERM handler (a driver killed by SIGTERM still dies),
    # and warns about it: that warning is noise here
    quiet = logging.getLogger("ray._private.worker")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    t = threading.Thread(target=go, name="ray-init", daemon=True)
    t.start()
    t.join(timeout_s)
    quiet.setLevel(level)
    if t.is_alive():
        raise StudioError(f"the Ray cluster at {kw.get('address')} did not let us in within {timeout_s:g} s: is it a "
                          "Ray head (GCS) port, and the same Ray version as here?")
    if box["error"] is not None:
        exc = box["error"]
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StudioError(f"cannot join the Ray cluster at {kw.get('address')}: {first}") from None


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise StudioError(f"the Ray executor needs Ray: {INSTALL_HINT}") from None
    return ray


# --- what runs on the nodes ----------------------------------------------------------------------

def _gpu_names() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [ln.strip() for ln in out.splitlines() if ln.strip()]


def node_info() -> dict[str, Any]:
    """This node in words: what summary.json records of each node."""
    mem = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"kind": node_kind(), "host": platform.node(), "cpu_count": os.cpu_count(), "memory_gb": mem,
            "gpus": _gpu_names(), "python": platform.python_version(),
            "packages": package_versions(PROBE_PACKAGES)}


def _worker_kind(device: str) -> str:
    """The node kind a worker's timings are quoted for; on CUDA, with its GPU."""
    kind = node_kind()
    if not device.startswith("cuda"):
        return kind
    names = _gpu_names()
    with contextlib.suppress(Exception):
        import ray

        ids = ray.get_gpu_ids()
        if ids and names:
            return f"{kind} + {names[int(ids[0]) % len(names)]}"
    return f"{kind} + {names[0]}" if names else f"{kind} + GPU"


def _sha256(path: str) -> str | None:
    """The file's sha256 on this node, or None where it cannot be read here."""
    from studio.weights.store import hash_file

    try:
        return hash_file(path, ("sha256",))["sha256"]
    except OSError:
        return None


def _probe() -> dict[str, Any]:
    import ray

    return {**node_info(), "node_id": ray.get_runtime_context().get_node_id()}


def _time_on_node(req: TimingRequest) -> dict[str, Any]:
    """The timing phase on the node Ray placed this task on (same helper as the local run)."""
    return time_candidates(req)


def _cold_start(variant_id: str, image: bytes, suffix: str, device: str, threads: int) -> dict[str, Any]:
    """`studio.bench.coldstart` on this node, with the image written to a local file."""
    from studio.bench import coldstart

    with tempfile.TemporaryDirectory(prefix="studio-coldstart-") as tmp:
        path = Path(tmp) / f"image{suffix}"
        path.write_bytes(image)
        res = coldstart.measure(variant_id, path, "cuda" if device.startswith("cuda") else device, threads)
    res["node"] = _worker_kind(device)
    res["host"] = platform.node()
    return res


@dataclass
class _Item:
    """One image of a chunk, as a worker gets it: a path it may read (checked against the
    driver's sha256), or an object-store reference to the bytes (or the decoded pixels)."""

    id: str
    store: bool
    path: str | None = None
    sha256: str | None = None
    ref: Any = None


class Worker:
    """A Ray actor (made with `ray.remote` at run time): runs chunks of jobs, keeping each
    variant's runner loaded in this process until the driver drops it."""

    def __init__(self, device: str, threads: int):
        import ray

        self.device = device
        self.threads = threads
        self.node = _worker_kind(device)
        self.node_id = ray.get_runtime_context().get_node_id()

    def hello(self, probe: tuple[str, str] | None) -> dict[str, Any]:
        """Where this worker is, and whether it sees the dataset (the first image, same sha256)."""
        sees = probe is not None and _sha256(probe[0]) == probe[1]
        return {"node": self.node, "node_id": self.node_id, "host": platform.node(), "pid": os.getpid(),
                "sees_data": sees}

    def _image(self, item: _Item) -> np.ndarray:
        from studio.data.dataset import Sample, SampleError
        from studio.imageio import load_image

        if item.ref is None:  # shared storage: the same file as the driver's, or an error
            assert item.path is not None
            if item.sha256 is not None and _sha256(item.path) != item.sha256:
                raise SampleError(f"sample {item.id!r}: {item.path} on {platform.node()} is missing or differs from "
                                  "the driver's copy")
            return Sample(item.id, image_path=Path(item.path)).image()  # the local executor's decode
        import ray

        data = ray.get(item.ref)
        if isinstance(data, np.ndarray):
            return data
        try:
            return load_image(data)
        except StudioError as exc:  # worded as the local executor words it
            raise SampleError(f"sample {item.id!r}: {str(exc).replace(f'<{len(data)} bytes>', item.path or 'image')}") \
                from None

    def run(self, job: Job, items: list[_Item], artifact_sha256: str | None):
        """Yield an ImageResult per image (matte as uint8), then this chunk's JobReport."""
        from studio import artifacts, engine
        from studio.imageio import alpha_to_uint8

        v = job.variant
        device = "cuda" if job.device.startswith("cuda") else job.device  # Ray picked the GPU
        key = (v.id, device, job.threads)
        loaded = engine.DEFAULT_POOL.has(key)
        if not loaded and artifact_sha256:
            rec = artifacts.installed(v)
            if rec is not None and rec.sha256 and rec.sha256 != artifact_sha256:
                yield JobReport(job.name, node=self.node, nodes=[self.node],
                                error=f"{v.id}: the artifact on {platform.node()} ({rec.sha256[:12]}) is not the "
                                      f"driver's ({artifact_sha256[:12]}): install the same build on every node")
                return
        chunk = replace(job, device=device, warmup=0 if loaded else job.warmup,
                        compute=[i for i in items if i.store], retime=[i for i in items if not i.store])
        gen = iter_job(chunk, self._image, lambda **ev: None, engine.get_runner, self.node, loaded_before=loaded)
        while True:
            try:
                res = next(gen)
            except StopIteration as stop:
                report = stop.value
                break
            if res.alpha is not None:
                res.alpha = alpha_to_uint8(res.alpha)  # what the cache stores, a quarter of the bytes
            yield res
        if report.error:
            report.error = f"{report.error} (on {platform.node()})"
        elif not loaded:  # this worker's one load of the variant: its cold start in-process
            report.loads = [{"node": self.node, "host": platform.node(), "pid": os.getpid(),
                             "load_s": report.load_s, "warmup_s": report.warmup_s, "memory_mb": report.memory_mb}]
        yield report

    def drop(self, variant_id: str) -> None:
        from studio import engine

        engine.DEFAULT_POOL.drop(variant_id)


# --- the driver ----------------------------------------------------------------------------------

@dataclass
class _Chunk:
    job: int  # index into the run's jobs
    samples: list[tuple[Any, bool]]  # (sample, store)


@dataclass(eq=False)
class _Worker:
    handle: Any
    shape: tuple[float, float]
    label: str
    hello: Any = None  # the pending hello() reference while it starts
    ready: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    calls: list[_Call] = field(default_factory=list)
    jobs: set[int] = field(default_factory=set)  # jobs whose runner it has loaded


@dataclass(eq=False)
class _Call:
    gen: Any
    worker: _Worker
    chunk: _Chunk
    received: set[str] = field(default_factory=set)


@dataclass
class _JobState:
    job: Job
    shape: tuple[float, float]
    artifact_sha256: str | None
    left: int  # images not delivered yet
    delivered: int = 0
    reports: list[JobReport] = field(default_factory=list)
    error: str | None = None
    started: bool = False
    done: bool = False


class RayExecutor:
    """Run the jobs on a Ray cluster (`address`), or on a local one started here (None).

    `workers`: worker actors per resource shape (default: as many as the cluster's nodes hold).
    `chunk_size`: images per task (default: about four chunks per worker and job, at most 16).
    `images`: "auto" (shared storage where a node sees the files, else the object store),
    "ship" (always the object store) or "shared" (always the files).
    `runtime_env`: Ray's, for the workers. `stall_s`: how long the run waits with no worker
    able to start before it stops (the finished images are cached; a rerun resumes)."""

    name = "ray"
    one_bar = True  # the driver shows one progress bar for the whole cluster

    def __init__(self, address: str | None = None, workers: int | None = None, chunk_size: int | None = None,
                 images: str = "auto", runtime_env: dict | None = None, stall_s: float = 600.0,
                 num_cpus: int | None = None, max_attempts: int = MAX_ATTEMPTS):
        if images not in ("auto", "ship", "shared"):
            raise StudioError(f"images={images!r}: auto, ship or shared")
        self.address = address
        self.workers = workers
        self.chunk_size = chunk_size
        self.images = images
        self.runtime_env = runtime_env
        self.stall_s = stall_s
        self.num_cpus = num_cpus
        self.max_attempts = max_attempts
        self._started_here = False
        self._nodes: dict[str, dict[str, Any]] | None = None  # node id -> node_info()
        self._stats: dict[str, Any] = {}
        self._connect_s: float | None = None  # ray.init, when this executor made the connection

    # --- the cluster ------------------------------------------------------------------------
    def connect(self) -> Any:
        ray = _ray()
        if not ray.is_initialized():
            t0 = time.perf_counter()
            kw: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
            if self.address:
                check_reachable(self.address)  # Ray itself retries an unreachable address for minutes
                _init_within(ray, CONNECT_TIMEOUT_S, address=self.address, **kw)
            else:  # a new local cluster for this run, shut down when it ends ("local": never a
                # stale cluster that ray.init() would otherwise find on this machine). Without
                # Ray's memory monitor: like the local executor, it must not kill the run's worker
                # because other programs on this machine use memory (the kernel still guards it)
                ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False,
                         _system_config={"memory_monitor_refresh_ms": 0}, **kw)
                self._started_here = True
            self._connect_s = time.perf_counter() - t0
        return ray

    def close(self) -> None:
        """Shut down the local cluster this executor started (a cluster it joined stays up)."""
        if self._started_here:
            ray = _ray()
            if ray.is_initialized():
                ray.shutdown()
            self._started_here = False

    def _alive(self) -> list[dict[str, Any]]:
        return [n for n in self.connect().nodes() if n.get("Alive")]

    def nodes(self) -> dict[str, dict[str, Any]]:
        """node id -> node_info() of every alive node, probed once (a tiny task on each)."""
        if self._nodes is None and self._started_here:  # the one node is this machine
            ray = self.connect()
            node_id = ray.get_runtime_context().get_node_id()
            res = next((n["Resources"] for n in self._alive() if n["NodeID"] == node_id), {})
            self._nodes = {node_id: {**node_info(), "node_id": node_id, "ray_cpus": res.get("CPU", 0.0),
                                     "ray_gpus": res.get("GPU", 0.0)}}
        if self._nodes is None:
            ray = self.connect()
            probe = _pinned(ray.remote(max_retries=0)(_probe), (0.0, 0.0))
            alive = self._alive()
            refs = {n["NodeID"]: probe(n["NodeID"]) for n in alive}
            self._nodes = {}
            for node_id, ref in refs.items():
                try:
                    info = ray.get(ref, timeout=300)
                except Exception as exc:  # a node that cannot run the studio: recorded, not fatal
                    info = {"kind": "unknown", "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
                res = next((n["Resources"] for n in alive if n["NodeID"] == node_id), {})
                info.update(node_id=node_id, ray_cpus=res.get("CPU", 0.0), ray_gpus=res.get("GPU", 0.0))
                self._nodes[node_id] = info
        return self._nodes

    def describe(self) -> dict[str, Any]:
        """The executor, the nodes (grouped by kind, with their hardware) and how images travel."""
        ray = self.connect()
        driver = package_versions(PROBE_PACKAGES)
        kinds: dict[str, dict[str, Any]] = {}
        for info in self.nodes().values():
            k = kinds.setdefault(info.get("kind", "unknown"), {
                "kind": info.get("kind", "unknown"), "count": 0, "hosts": [], "cpus": 0.0, "gpus": 0.0,
                "gpu_names": info.get("gpus") or [], "memory_gb": info.get("memory_gb"),
                "python": info.get("python")})
            k["count"] += 1
            k["hosts"].append(info.get("host"))
            k["cpus"] += info.get("ray_cpus") or 0.0  # what Ray may use on these nodes, all together
            k["gpus"] += info.get("ray_gpus") or 0.0
            differ = {p: v for p, v in (info.get("packages") or {}).items() if driver.get(p) != v}
            if differ:
                k.setdefault("packages_differ_from_driver", {}).update(differ)
            if info.get("error"):
                k["error"] = info["error"]
        return {"executor": self.name,
                "ray": {"version": ray.__version__, "address": self.address or "local (started by this run)",
                        "connect_s": self._connect_s},
                "nodes": list(kinds.values()),
                "images": {"auto": "shared storage where a node sees the dataset's files (sha256 checked), "
                                   "else Ray's object store",
                           "ship": "Ray's object store (the driver puts each image's bytes once)",
                           "shared": "shared storage: every node reads the dataset's files"}[self.images]}

    # --- resources --------------------------------------------------------------------------
    def _node_slots(self, shape: tuple[float, float]) -> dict[str, int]:
        """Workers of this shape each alive node holds."""
        cpus, gpus = shape
        out = {}
        for n in self._alive():
            r = n.get("Resources") or {}
            k = math.floor(r.get("CPU", 0.0) / cpus + 1e-9) if cpus else 1_000_000
            if gpus:
                k = min(k, math.floor(r.get("GPU", 0.0) / gpus + 1e-9))
            if k > 0:
                out[n["NodeID"]] = k
        return out

    def shape(self, device: str, threads: int) -> tuple[float, float]:
        """(CPUs, GPUs) of one worker: its threads, and a GPU on CUDA."""
        gpus = 1.0 if device.startswith("cuda") else 0.0
        if threads > 0:
            return float(threads), gpus
        cpus = [(n.get("Resources") or {}).get("CPU", 0.0) for n in self._alive()]
        cpus = [c for c in cpus if c >= 1]
        return float(min(cpus) if cpus else 1.0), gpus

    # --- cold start -------------------------------------------------------------------------
    def measure_cold_start(self, variant_id: str, image_path: str | os.PathLike, device: str,
                           threads: int) -> dict[str, Any]:
        """Cold start once per node kind, in a fresh subprocess there (in parallel over kinds).
        The top level is the kind with the most worker slots; `by_node` holds every kind."""
        ray = self.connect()

        if self._started_here:  # a cluster of this one machine: measured here, as locally
            from studio.bench import coldstart

            res = coldstart.measure(variant_id, image_path, device, threads)
            res["node"] = _worker_kind(device)
            return {**res, "by_node": {res["node"]: dict(res)}}
        shape = self.shape(device, threads)
        slots = self._node_slots(shape)
        by_kind: dict[str, list[str]] = {}
        for node_id, info in self.nodes().items():
            if node_id in slots:
                by_kind.setdefault(info.get("kind", "unknown"), []).append(node_id)
        if not by_kind:
            raise StudioError(f"no node of the cluster has {shape[0]:g} CPUs" + (" and a GPU" if shape[1] else ""))
        data = ray.put(Path(image_path).read_bytes())
        start = _pinned(ray.remote(max_retries=0)(_cold_start), shape,
                        variant_id, data, Path(image_path).suffix, device, threads)
        refs = {kind: (start(ids[0]), ids) for kind, ids in by_kind.items()}  # one node of each kind, all at once
        results: dict[str, dict[str, Any]] = {}
        for kind, (ref, ids) in refs.items():
            try:
                results[kind] = self._get_on_a_live_node(ref, ids, start)
            except Exception as exc:
                cause = getattr(exc, "cause", None) or exc
                results[kind] = {"error": str(cause).splitlines()[-1] if str(cause) else type(cause).__name__}
        main = max(by_kind, key=lambda k: (sum(slots[i] for i in by_kind[k]), k))
        if "error" in results[main]:
            raise RuntimeError(f"on {main}: {results[main]['error']}")
        return {**results[main], "by_node": results}

    # --- the interleaved timing phase -------------------------------------------------------
    def time_interleaved(self, req: TimingRequest, on_event: OnEvent) -> dict[str, Any]:
        """The timing phase as one task on one node of the kind with the most worker slots (its
        latencies are that node kind's: never pooled over kinds), with the shape of a worker;
        the images travel through the object store. On a cluster of this one machine: here."""
        if self._started_here:
            return time_candidates(req, on_event)
        ray = self.connect()

        shape = self.shape(req.device, req.threads)
        slots = self._node_slots(shape)
        if not slots:
            raise StudioError(f"no node of the cluster has {shape[0]:g} CPUs" + (" and a GPU" if shape[1] else "")
                              + " for the timing phase")
        kinds: dict[str, list[str]] = {}
        for node_id, info in self.nodes().items():
            if node_id in slots:
                kinds.setdefault(info.get("kind", "unknown"), []).append(node_id)
        main = max(kinds, key=lambda k: (sum(slots[i] for i in kinds[k]), k))
        on_event(stage="timing", message=f"interleaved timing on {main} …")
        start = _pinned(ray.remote(max_retries=0)(_time_on_node), shape,
                        replace(req, device="cuda" if req.device.startswith("cuda") else req.device))
        record = self._get_on_a_live_node(start(kinds[main][0]), kinds[main], start)
        record["node"] = main
        return record

    def _get_on_a_live_node(self, ref: Any, node_ids: list[str], start: Callable[[str], Any]) -> Any:
        """The result of a task pinned to node_ids[0]; when that node is gone (Ray may list a node
        as alive for seconds after it died, so a pinned task can be unschedulable), the same task
        on the next node of the list. A failure in the task's own code is raised at once."""
        ray = self.connect()
        for k, node_id in enumerate(node_ids):
            if k:
                ref = start(node_id)
            try:
                return ray.get(ref)
            except ray.exceptions.RayTaskError:
                raise
            except ray.exceptions.RayError:
                if k == len(node_ids) - 1:
                    raise
                if self._nodes:
                    self._nodes.pop(node_id, None)  # gone: not offered to the next task
        raise StudioError("no node to run on")

    # --- the run ----------------------------------------------------------------------------
    def run(self, jobs: list[Job], image_of: Callable[[Any], np.ndarray], on_image: OnImage,
            on_job_done: OnJobDone, on_event: OnEvent) -> None:
        if not jobs:
            return
        _Run(self, jobs, image_of, on_image, on_job_done, on_event).go()

    def run_stats(self) -> dict[str, Any]:
        """What the cluster did: workers, their nodes, lost workers and re-queued images."""
        return dict(self._stats)


def _pinned(task: Any, shape: tuple[float, float], *args: Any) -> Callable[[str], Any]:
    """start(node_id): `task(*args)` on that node only, with a worker's (CPUs, GPUs)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    def start(node_id: str) -> Any:
        return task.options(num_cpus=shape[0], num_gpus=shape[1],
                            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote(*args)
    return start


class _Run:
    """One executor.run: the queue of chunks, the workers, and what came back."""

    def __init__(self, ex: RayExecutor, jobs: list[Job], image_of: Callable[[Any], np.ndarray], on_image: OnImage,
                 on_job_done: OnJobDone, on_event: OnEvent):
        from studio import artifacts

        self.ex, self.ray = ex, ex.connect()
        self.image_of, self.on_image, self.on_job_done, self.on_event = image_of, on_image, on_job_done, on_event
        self.t0 = time.perf_counter()
        self.jobs: list[_JobState] = []
        for job in jobs:
            rec = None
            with contextlib.suppress(StudioError):
                rec = artifacts.installed(job.variant)
            self.jobs.append(_JobState(job, ex.shape(job.device, job.threads), rec.sha256 if rec else None,
                                       left=job.n_images))
        self.queue: deque[_Chunk] = deque()
        self.workers: list[_Worker] = []
        self.waiting: dict[Any, _Worker | _Call] = {}  # hello reference or call generator -> whose
        self.worker_cls = self.ray.remote(Worker)
        self.refs: dict[str, Any] = {}  # content hash -> object-store reference
        self.attempts: dict[tuple[int, str], int] = {}
        self.seen: set[tuple[int, str]] = set()
        self.probe = self._probe_file()
        self.last_progress = time.perf_counter()
        self.stats: dict[str, Any] = {"workers_started": 0, "workers": [], "workers_lost": [], "images_requeued": 0,
                                      "images_failed_after_retries": 0, "images_via": {"shared storage": 0,
                                                                                        "object store": 0}}
        ex._stats = self.stats

    # --- set-up -----------------------------------------------------------------------------
    def _probe_file(self) -> tuple[str, str] | None:
        if self.ex.images == "ship":
            return None
        for st in self.jobs:
            for s in st.job.compute + st.job.retime:
                if getattr(s, "image_path", None):
                    return str(Path(s.image_path).resolve()), s.content_hash
        return None

    def _plan_chunks(self, targets: dict[tuple[float, float], int]) -> None:
        for j, st in enumerate(self.jobs):
            samples = [(s, True) for s in st.job.compute] + [(s, False) for s in st.job.retime]
            n_workers = max(1, targets.get(st.shape, 1))
            size = self.ex.chunk_size or max(1, min(16, math.ceil(len(samples) / (4 * n_workers))))
            for i in range(0, len(samples), size):
                self.queue.append(_Chunk(j, samples[i:i + size]))
        self.stats["chunks"] = len(self.queue)

    def _start_worker(self, shape: tuple[float, float]) -> None:
        opts: dict[str, Any] = {"num_cpus": shape[0], "num_gpus": shape[1], "max_restarts": 0,
                                "max_task_retries": 0, "scheduling_strategy": "SPREAD"}
        if self.ex.runtime_env:
            opts["runtime_env"] = self.ex.runtime_env
        st = next(s for s in self.jobs if s.shape == shape)
        handle = self.worker_cls.options(**opts).remote(st.job.device, st.job.threads)
        self.stats["workers_started"] += 1
        w = _Worker(handle, shape, label=f"worker {self.stats['workers_started']}")
        w.hello = handle.hello.remote(self.probe)
        self.waiting[w.hello] = w
        self.workers.append(w)

    # --- the loop ---------------------------------------------------------------------------
    def go(self) -> None:
        targets: dict[tuple[float, float], int] = {}
        for st in self.jobs:
            if st.shape in targets:
                continue
            slots = sum(self.ex._node_slots(st.shape).values())
            if slots == 0:
                targets[st.shape] = 0
                continue
            n_images = sum(s.job.n_images for s in self.jobs if s.shape == st.shape)
            targets[st.shape] = max(1, min(self.ex.workers or slots, n_images))
        for st in self.jobs:
            if targets[st.shape] == 0:
                st.error = (f"{st.job.name}: no node of the Ray cluster has {st.shape[0]:g} CPUs"
                            + (" and a GPU" if st.shape[1] else "") + " free for a worker")
        self.stats["workers_target"] = {f"{c:g} CPU" + (f" + {g:g} GPU" if g else ""): n
                                        for (c, g), n in targets.items()}
        self._plan_chunks(targets)
        self.queue = deque(c for c in self.queue if not self.jobs[c.job].error)
        # a lost worker is replaced, after a back-off that doubles while workers keep dying
        # without an image coming back; after 2n+2 such losses in a row the run stops trying
        self.loss_limit = {shape: 2 * n + 2 for shape, n in targets.items()}
        self.losses_in_a_row = {shape: 0 for shape in targets}
        self.pending_starts: list[tuple[float, tuple[float, float]]] = []
        for shape, n in targets.items():
            for _ in range(n):
                self._start_worker(shape)
        self._event(f"starting {sum(targets.values())} workers")
        try:
            while True:
                self._finish_jobs()
                if all(st.done for st in self.jobs):
                    break
                self._start_due()
                self._dispatch()
                waitables = list(self.waiting)
                if not waitables and self.pending_starts:
                    time.sleep(max(0.0, min(t for t, _ in self.pending_starts) - time.perf_counter()))
                    continue
                if not waitables:
                    lost = self.stats["workers_lost"]
                    why = f" (the last one: {lost[-1]['error']})" if lost else ""
                    raise StudioError(f"the Ray run has work left but no worker could run it{why}; the finished "
                                      "images are cached: rerun to resume")
                timeout = WAIT_S
                if self.pending_starts:
                    timeout = max(0.05, min(timeout, min(t for t, _ in self.pending_starts) - time.perf_counter()))
                ready, _ = self.ray.wait(waitables, num_returns=1, timeout=timeout)
                if not ready:
                    self._check_stall()
                    continue
                self._handle(ready[0])
        finally:
            for w in self.workers:
                with contextlib.suppress(Exception):
                    self.ray.kill(w.handle, no_restart=True)
            self.stats["wall_s"] = round(time.perf_counter() - self.t0, 3)

    def _start_due(self) -> None:
        now = time.perf_counter()
        for due in [x for x in self.pending_starts if x[0] <= now]:
            self.pending_starts.remove(due)
            if any(not st.done for st in self.jobs if st.shape == due[1]):
                self._start_worker(due[1])  # Ray places it wherever there is room (it may wait)

    def _event(self, message: str) -> None:
        ready = [w for w in self.workers if w.ready]
        hosts = {w.info.get("host") for w in ready}
        self.on_event(stage="cluster", message=f"{len(ready)} workers on {len(hosts)} nodes · {message}")

    def _check_stall(self) -> None:
        if any(w.ready for w in self.workers):
            self.last_progress = time.perf_counter()
            return
        if time.perf_counter() - self.last_progress > self.ex.stall_s:
            need = {f"{c:g} CPU" + (f" + {g:g} GPU" if g else "") for (c, g) in {self.jobs[c.job].shape
                                                                                  for c in self.queue}}
            raise StudioError(f"no Ray worker ({', '.join(sorted(need))}) could start for {self.ex.stall_s:g} s: the "
                              f"cluster has {self.ray.available_resources()}. The finished images are cached; "
                              "rerun to resume")

    def _dispatch(self) -> None:
        # first one chunk to every idle worker, then a second in flight only where the queue
        # holds more than the workers still starting will want (else a fast starter hoards it)
        for depth in range(1, IN_FLIGHT + 1):
            for w in self.workers:
                if depth > 1:
                    starting = sum(1 for x in self.workers if x.shape == w.shape and x.hello is not None)
                    idle = sum(1 for x in self.workers if x.shape == w.shape and x.ready and not x.calls)
                    if self._queued(w.shape) <= starting + idle:
                        continue
                self._give(w, depth)

    def _queued(self, shape: tuple[float, float]) -> int:
        return sum(1 for c in self.queue if self.jobs[c.job].shape == shape and not self.jobs[c.job].error)

    def _give(self, w: _Worker, depth: int) -> None:
        while w.ready and len(w.calls) < depth:
            k = next((i for i, c in enumerate(self.queue) if self.jobs[c.job].shape == w.shape
                      and not self.jobs[c.job].error), None)
            if k is None:
                break
            chunk = self.queue[k]
            del self.queue[k]
            st = self.jobs[chunk.job]
            if not st.started:
                st.started = True
                self.on_event(stage="loading", variant=st.job.name,
                              message=f"loading {st.job.name} on the cluster …")
            items = [self._item(s, store, w) for s, store in chunk.samples]
            job = replace(st.job, compute=[], retime=[])  # the worker gets the images as items
            gen = w.handle.run.remote(job, items, st.artifact_sha256)
            call = _Call(gen, w, chunk)
            w.calls.append(call)
            self.waiting[gen] = call
            w.jobs.add(chunk.job)

    def _item(self, sample: Any, store: bool, w: _Worker) -> _Item:
        path = getattr(sample, "image_path", None)
        path = str(Path(path).resolve()) if path else None
        shared = path is not None and (self.ex.images == "shared" or (self.ex.images == "auto"
                                                                       and w.info.get("sees_data")))
        if shared:
            self.stats["images_via"]["shared storage"] += 1
            return _Item(sample.id, store, path=path, sha256=sample.content_hash)
        self.stats["images_via"]["object store"] += 1
        key = sample.content_hash
        if key not in self.refs:
            data: Any = Path(path).read_bytes() if path else self.image_of(sample)
            self.refs[key] = self.ray.put(data)
        return _Item(sample.id, store, path=path, ref=self.refs[key])

    # --- what comes back --------------------------------------------------------------------
    def _handle(self, ref: Any) -> None:
        whose = self.waiting.get(ref)
        if whose is None:  # a worker already given up
            return
        if isinstance(whose, _Worker):
            w = whose
            del self.waiting[ref]
            w.hello = None
            try:
                w.info = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:
                self._lost(w, exc)
                return
            w.ready = True
            w.info["label"] = w.label
            self.stats["workers"].append(w.info)  # live: what a test or a log can look at mid-run
            self.last_progress = time.perf_counter()
            self._event(f"{w.label} ready on {w.info.get('host')}")
            return
        call = whose
        try:
            out = self.ray.get(next(call.gen))
        except StopIteration:
            self._forget(call)
            self._requeue(call, first=False)  # nothing should be left; if so, it runs again
            return
        except self.ray.exceptions.RayTaskError as exc:  # a bug in the worker's code: not retried
            self._forget(call)
            msg = str(exc.cause if getattr(exc, "cause", None) else exc).splitlines()[-1]
            for s, store in call.chunk.samples:
                if s.id not in call.received:
                    self._deliver(call.chunk.job, ImageResult(self.jobs[call.chunk.job].job.name, s.id, None,
                                                              store=store, error=f"worker error: {msg}"))
            return
        except self.ray.exceptions.RayError as exc:  # the worker or its node died
            self._lost(call.worker, exc)
            return
        self.last_progress = time.perf_counter()
        if isinstance(out, JobReport):
            st = self.jobs[call.chunk.job]
            st.reports.append(out)
            if out.error and not st.error:
                st.error = out.error
            return
        call.received.add(out.sample_id)
        self._deliver(call.chunk.job, out)

    def _forget(self, call: _Call) -> None:
        call.worker.calls.remove(call)
        self.waiting.pop(call.gen, None)

    def _deliver(self, j: int, res: ImageResult) -> None:
        if (j, res.sample_id) in self.seen:  # never twice (a result raced with a worker's death)
            return
        self.seen.add((j, res.sample_id))
        st = self.jobs[j]
        st.left -= 1
        st.delivered += 1
        self.losses_in_a_row[st.shape] = 0  # work gets done: losses so far were not a crash loop
        self.on_image(res)
        self.on_event(stage="image", variant=st.job.name, done=st.delivered, total=st.job.n_images,
                      message=f"{st.job.name}: {st.delivered}/{st.job.n_images} images")

    def _lost(self, w: _Worker, exc: BaseException) -> None:
        """A dead worker (or node): its undelivered images go back to the head of the queue."""
        if w not in self.workers or w.info.get("lost"):
            return
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        requeued = 0
        for k, call in enumerate(w.calls):
            requeued += self._requeue(call, first=k == 0)
            self.waiting.pop(call.gen, None)
        w.calls = []
        w.ready = False
        if w.hello is not None:
            self.waiting.pop(w.hello, None)
        w.hello = None
        w.info["lost"] = True
        self.stats["workers_lost"].append({"worker": w.label, "host": w.info.get("host"), "node": w.info.get("node"),
                                           "at_s": round(time.perf_counter() - self.t0, 2),
                                           "error": f"{type(exc).__name__}: {first}"[:300],
                                           "images_requeued": requeued})
        with contextlib.suppress(Exception):
            self.ray.kill(w.handle, no_restart=True)
        left = any(not st.done for st in self.jobs if st.shape == w.shape)
        n = self.losses_in_a_row.get(w.shape, 0)
        if left and n < self.loss_limit.get(w.shape, 0):
            self.losses_in_a_row[w.shape] = n + 1
            self.pending_starts.append((time.perf_counter() + min(30.0, 2.0 ** n), w.shape))
        self._event(f"{w.label} lost ({type(exc).__name__}); {requeued} images queued again")

    def _requeue(self, call: _Call, first: bool) -> int:
        """Put a call's undelivered images back (one chunk each); the image a dying worker was
        on counts an attempt, and after `max_attempts` it is an error, not a retry."""
        j = call.chunk.job
        left = [(s, store) for s, store in call.chunk.samples
                if s.id not in call.received and (j, s.id) not in self.seen]
        if not left:
            return 0
        if first:
            key = (j, left[0][0].id)
            self.attempts[key] = self.attempts.get(key, 0) + 1
        again = []
        for s, store in left:
            if self.attempts.get((j, s.id), 0) >= self.ex.max_attempts:
                self.stats["images_failed_after_retries"] += 1
                self._deliver(j, ImageResult(self.jobs[j].job.name, s.id, None, store=store,
                                             error=f"{self.ex.max_attempts} Ray workers died on this image"))
            else:
                again.append(_Chunk(j, [(s, store)]))
        self.queue.extendleft(reversed(again))
        self.stats["images_requeued"] += len(again)
        return len(again)

    def _finish_jobs(self) -> None:
        for j, st in enumerate(self.jobs):
            if st.done:
                continue
            busy = any(c.chunk.job == j for w in self.workers for c in w.calls)
            queued = any(c.job == j for c in self.queue)
            if busy or (queued and not st.error) or (st.left > 0 and not st.error):
                continue
            self.queue = deque(c for c in self.queue if c.job != j)
            st.done = True
            self.on_job_done(self._report(st))
            for w in self.workers:
                if j in w.jobs and w.ready:
                    w.handle.drop.remote(st.job.variant.id)  # like the local executor: one model at a time

    def _report(self, st: _JobState) -> JobReport:
        """One job's report from its chunks': every worker's load, the nodes, the memory."""
        v = st.job.name
        reps = st.reports
        loads = [x for r in reps for x in r.loads]
        rep = JobReport(v, error=st.error, loads=loads)
        rep.nodes = sorted({r.node for r in reps if r.node})
        rep.node = rep.nodes[0] if len(rep.nodes) == 1 else ""
        if loads:
            rep.load_s = float(np.mean([x["load_s"] for x in loads]))
            rep.warmup_s = float(sum(x["warmup_s"] for x in loads))  # model time spent warming up, all workers
            mems = [x["memory_mb"] for x in loads if x.get("memory_mb") is not None]
            rep.memory_mb = max(mems) if mems else None
            rep.memory_source = next((r.memory_source for r in reps if r.memory_source), None)
        if reps:
            rep.load_average = (reps[0].load_average[:3] + reps[-1].load_average[-3:]) if reps[0].load_average \
                else load_average()
        return rep
