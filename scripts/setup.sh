#!/usr/bin/env bash
# Install Matting Studio into ./.venv. Idempotent: a second run only checks.
#   scripts/setup.sh          runtime
#   scripts/setup.sh --dev    + test tools, PySODMetrics (for cross-checks) and Debian's Chromium
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0; [ "${1:-}" = "--dev" ] && DEV=1
PY=${PYTHON:-python3}

[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/pip --disable-pip-version-check -q"

# torch first, pinned: the only build on this machine's disk. A bare `torch` requirement
# would download several GB.
$PIP install "torch==2.14.1" "torchvision==0.29.1"
# the [ray] extra: the benchmark's Ray executor (pinned ray; see pyproject.toml)
if [ $DEV = 1 ]; then $PIP install -e ".[dev,ray]"; else $PIP install -e ".[ray]"; fi
# transparent-background asks for opencv-python, which would sit beside opencv-python-headless
# (both provide cv2). Its other requirements are in pyproject.toml; install it without deps.
$PIP install --no-deps "transparent-background==1.3.4"

if [ $DEV = 1 ]; then
  # PySODMetrics pins scikit-image<0.26 and numpy<2.3.5, which clash with rembg's
  # scikit-image>=0.26. It is only a reference for cross-check tests, and its code runs on
  # the newer versions, so it goes in without its pins.
  $PIP install --no-deps "pysodmetrics==1.6.2"
  if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
      (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null)) \
        || echo "warning: could not install Debian's chromium; browser tests will skip"
    else
      echo "note: run 'sudo apt-get install chromium chromium-driver' for the browser tests"
    fi
  fi
fi
.venv/bin/python -c "import studio, torch, onnxruntime, rembg, transparent_background, ray" 2>/dev/null \
  && echo "setup: ok (.venv)"
