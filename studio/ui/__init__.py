"""The Gradio app (`python app.py`): the Blocks layout in `blocks`, plain handlers in `compare`,
`benchmark` and `models`. Importing this package loads no model package (no torch,
onnxruntime, rembg or transparent-background): models load lazily on first use.
"""

from __future__ import annotations

from typing import Any

from studio import settings

__all__ = ["build_app", "launch_kwargs", "main"]


def build_app():
    from studio.ui.blocks import build_app as _build

    return _build()


def launch_kwargs(**overrides: Any) -> dict[str, Any]:
    """What `demo.launch` gets, shared by app.py and the tests: host, upload cap, theme, CSS."""
    from studio.ui import theme

    kw: dict[str, Any] = {
        "server_name": settings.server_name(),
        "max_file_size": f"{settings.max_upload_mb():g}mb",
        "theme": theme.theme(),
        "css": theme.CSS,
        "head": theme.HEAD,
        "show_error": True,
        "footer_links": ["api", "gradio"],
    }
    kw.update(overrides)
    return kw


def main() -> None:
    build_app().launch(**launch_kwargs())
