"""Matting Studio in the browser (also the Hugging Face Space entry point).

    python app.py        # http://127.0.0.1:7860 locally; 0.0.0.0 on a Space (SPACE_ID set)

Thin on purpose: the layout and its handlers live in `studio.ui`. Models load lazily on first
use, so the page is served before any model package is imported.
"""

from studio.ui import build_app, launch_kwargs

demo = build_app()

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
