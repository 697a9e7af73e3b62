"""Export a chosen variant as a self-contained serving bundle (`studio export VARIANT DIR`).

The bundle runs without the studio and without torch: an ONNX Runtime model, or an OpenVINO IR
with the compiled model for the exporting machine's kind of CPU; its preprocessing as JSON;
`prepost.py` (the studio's own pre/post-processing and decoding, copied); and `serve.py`, an HTTP server on uvicorn and Starlette that speaks rembg's API.
`studio.export.coldstart.measure_bundle` measures its cold start as a user sees it.
"""

from studio.export.bundle import (
    ExportError,
    ExportResult,
    check_exportable,
    cuda_allowed,
    export_bundle,
)

__all__ = ["ExportError", "ExportResult", "check_exportable", "cuda_allowed", "export_bundle"]
