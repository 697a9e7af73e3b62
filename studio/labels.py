"""The words every front shows for a state. Code decides on booleans and exception classes;
these strings are only ever displayed, so they live here, once."""

from __future__ import annotations

UNTRAINED = "untrained — latency only"
UNTRAINED_SHORT = "⚠ untrained"
TRAINED_ON_DATASET = "trained on this dataset"
NON_COMMERCIAL = "non-commercial licence"


def needs(requirement: str) -> str:
    return f"needs {requirement}"


def calibrated_on(n: int) -> str:
    return f"calibrated on {n} of these images"


def agreement_with(variant_id: str) -> str:
    return f"agreement with {variant_id}"


RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO", "torch": "PyTorch", "opencv": "OpenCV"}


def check_images(agreement: dict) -> str:
    """Where and on what a build's agreement was measured, e.g. "16 held-out sod-dev images, on
    OpenVINO" (the same file can run on two runtimes, which agree with the source differently)."""
    check_set, n = agreement["set"], agreement["n"]
    held = " held-out" if check_set.get("part") == "held-out" else ""
    runtime = agreement.get("runtime")
    on = f", on {RUNTIME_NAMES.get(runtime, runtime)}" if runtime else ""
    return f"{n}{held} {check_set.get('dataset', '?')} images{on}"
