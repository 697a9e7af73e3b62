"""A mirror for the download hosts (GitHub releases, the npm registry): one rule, and the tools
to lay out and serve a local one.

The rule (STUDIO_MIRROR=BASE): an `http(s)://HOST/PATH?QUERY` URL is fetched from
`BASE/HOST/PATH?QUERY` instead, for every host. The host stays as the first path segment, so
one mirror serves several hosts without clashes, and the layout is the one `wget -x URL`
writes. For example, with STUDIO_MIRROR=http://127.0.0.1:8000:

    https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2netp.onnx
 -> http://127.0.0.1:8000/github.com/danielgatis/rembg/releases/download/v0.0.0/u2netp.onnx

With a mirror set only the mirror is asked (a local mirror or a test never reaches the
internet); the checksums are those of the original source, so a mirror cannot substitute a file.

    python -m studio.weights.mirror layout DIR    # copy what this machine has into DIR, by URL
    python -m studio.weights.mirror serve DIR --port 8000   # serve DIR (with HTTP Range: resumes)
"""

from __future__ import annotations

import argparse
import http.server
import shutil
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from studio import settings


def rewrite(url: str, base: str | None = None) -> str:
    """`url` as the mirror serves it (unchanged when no mirror is set or it is not http(s))."""
    base = base if base is not None else settings.mirror_url()
    if not base:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return url
    return f"{base.rstrip('/')}/{relative_path(url)}"


def relative_path(url: str) -> str:
    """Where a URL's file lies inside a mirror: `HOST/PATH` (plus `?QUERY` when there is one)."""
    parts = urlsplit(url)
    path = f"{parts.netloc}{parts.path or '/'}"
    return f"{path}?{parts.query}" if parts.query else path


# --- laying out a local mirror ------------------------------------------------------------------


def layout(root: Path, names: list[str] | None = None) -> list[tuple[str, Path]]:
    """Copy installed files into `root` under the URL paths they were published at.

    A weights file goes under a `url` source only when it matches that source's checksums (the
    fp32 IS-Net upcast here is not rembg's file, so it is not laid out as rembg's). The npm
    tarballs in the cache go under the registry's tarball paths when they match the registry's
    integrity. Returns (url, file) pairs."""
    from studio.weights import store
    from studio.weights.checks import matches_source
    from studio.weights.npm import integrity_of, npm_cache_file, npm_tarball_url
    from studio.zoo import load_zoo

    zoo = load_zoo()
    done: list[tuple[str, Path]] = []
    for name, wf in zoo.files.items():
        if names and name not in names:
            continue
        rec = store.installed(name)
        for s in wf.sources:
            if s.kind == "url" and rec is not None and matches_source(s, wf, Path(rec.path)) is None:
                done.append((s.location, _copy(Path(rec.path), root / relative_path(s.location))))
            if s.kind == "npm" and (tgz := npm_cache_file(s.location)).is_file() and (
                    not s.extra.get("integrity") or integrity_of(tgz) == s.extra["integrity"]):
                url = npm_tarball_url(s.location)
                if url not in (u for u, _ in done):
                    done.append((url, _copy(tgz, root / relative_path(url))))
    return done


def _copy(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists() or dest.stat().st_size != src.stat().st_size:
        shutil.copyfile(src, dest)
    return dest


# --- serving one ----------------------------------------------------------------------------------


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with `Range: bytes=N-` (206), as the release hosts answer, so an
    interrupted download resumes against a local mirror too."""

    _remaining: int | None = None  # bytes of a 206 still to send

    def send_head(self):  # noqa: D401 (http.server's hook)
        self._remaining = None
        rng = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not rng or not path.is_file() or not rng.startswith("bytes="):
            return super().send_head()
        if_range = self.headers.get("If-Range")
        if if_range and if_range != self.date_time_string(int(path.stat().st_mtime)):
            return super().send_head()  # the file changed since the part was fetched: all of it
        start_s, _, end_s = rng[len("bytes="):].partition("-")
        size = path.stat().st_size
        try:
            start = int(start_s)
            end = min(int(end_s), size - 1) if end_s else size - 1
        except ValueError:
            return super().send_head()
        if start >= size or start > end:
            self.send_error(416, "Range Not Satisfiable")
            return None
        f = open(path, "rb")  # noqa: SIM115 (http.server closes it after copyfile)
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Last-Modified", self.date_time_string(int(path.stat().st_mtime)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        return f

    rate: float | None = None  # bytes per second, to show a download in progress (demos)

    def copyfile(self, source, outputfile):
        remaining = self._remaining
        self._remaining = None
        block_size = 1 << 16 if self.rate else 1 << 20
        t0, sent = time.perf_counter(), 0
        while remaining is None or remaining > 0:
            block = source.read(block_size if remaining is None else min(block_size, remaining))
            if not block:
                break
            outputfile.write(block)
            sent += len(block)
            if remaining is not None:
                remaining -= len(block)
            if self.rate:
                time.sleep(max(0.0, sent / self.rate - (time.perf_counter() - t0)))

    verbose = False  # log each request to stderr (`serve --log`)

    def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
        if self.verbose:
            super().log_message(format, *args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up is no error
            super().handle_error(request, client_address)


def serve(root: Path, port: int = 0, host: str = "127.0.0.1", handler: type[RangeHandler] = RangeHandler,
          rate: float | None = None, verbose: bool = False) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve `root` in a daemon thread (at most `rate` bytes/s per download); returns the
    server and its base URL."""
    root.mkdir(parents=True, exist_ok=True)
    if rate or verbose:
        handler = type(handler.__name__, (handler,), {"rate": rate or handler.rate, "verbose": verbose})
    httpd = _Server((host, port), lambda *a: handler(*a, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True, name="studio-mirror").start()
    return httpd, f"http://{host}:{httpd.server_address[1]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studio.weights.mirror", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    lay = sub.add_parser("layout", help="copy this machine's verified files into DIR by their URLs")
    lay.add_argument("dir", type=Path)
    lay.add_argument("names", nargs="*", help="weights file names (default: every installed one)")
    srv = sub.add_parser("serve", help="serve DIR over HTTP (Range supported) until interrupted")
    srv.add_argument("dir", type=Path)
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--rate-mb", type=float, help="cap each download at this many MB/s (to watch progress)")
    srv.add_argument("--log", action="store_true", help="log every request")
    a = ap.parse_args(argv)
    if a.cmd == "layout":
        for url, path in layout(a.dir, a.names or None):
            print(f"{url}\n  -> {path}")
        return 0
    httpd, url = serve(a.dir, a.port, a.host, rate=a.rate_mb * 1e6 if a.rate_mb else None, verbose=a.log)
    print(f"serving {a.dir} at {url}  (STUDIO_MIRROR={url})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
