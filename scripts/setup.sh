#!/usr/bin/env bash
# Install Matting Studio into ./.venv. Idempotent: a second run only checks.
#   scripts/setup.sh          runtime
#   scripts/setup.sh --dev    + test tools, PySODMetrics (for cross-checks) and Debian's Chromium
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0; [ "${1:-}" = "--dev" ] && DEV=1
PY=${PYTHON:-python3}

# The pins need a Python recent enough for every pinned wheel (constraints.txt says which):
# refuse an older one here rather than let pip fail on the one package that needs it.
NEED=$(sed -n 's/^# python >= \([0-9.]*\).*/\1/p' constraints.txt)
VENV_PY=$([ -x .venv/bin/python ] && echo .venv/bin/python || echo "$PY")
"$VENV_PY" -c "import sys; sys.exit(sys.version_info[:3] < tuple(map(int, '${NEED:-3}'.split('.'))))" || {
  echo "setup: constraints.txt's pins need Python >= $NEED; $VENV_PY is $("$VENV_PY" -V 2>&1)." \
       "Set PYTHON to a newer python3 (and remove .venv if it was made with this one)." >&2
  exit 1
}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# Every install goes through constraints.txt: each package, transitive ones included, at the
# version `make test` tested and requirements.txt (the Space) pins. Versions live there only
# (regenerate with `.venv/bin/python scripts/pins.py write`). pip's own config may add its
# constraints (this machine's /etc/xdg/pip caps torch at the build on its disk); both apply.
PIP=".venv/bin/pip --disable-pip-version-check -q"
PINNED="$PIP install -c constraints.txt"

# pip first, at its pin: the installer is part of the tested environment too.
$PINNED pip
# Everything in one resolution, torch included at its pin (a bare `torch` would download several
# GB); the [ray] extra is the benchmark's Ray executor (see pyproject.toml).
if [ $DEV = 1 ]; then $PINNED -e ".[dev,ray]"; else $PINNED -e ".[ray]"; fi
# transparent-background asks for opencv-python, which would sit beside opencv-python-headless
# (both provide cv2). Its other requirements are in pyproject.toml; install it without deps.
$PINNED --no-deps transparent-background

if [ $DEV = 1 ]; then
  # PySODMetrics pins scikit-image<0.26 and numpy<2.3.5, which clash with rembg's
  # scikit-image>=0.26. It is only a reference for cross-check tests, and its code runs on
  # the newer versions, so it goes in without its pins.
  $PINNED --no-deps pysodmetrics
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
# An older .venv may hold packages the pins no longer name; pip leaves those alone. Say so here
# (tests/test_app_space.py fails on them too).
[ $DEV = 1 ] && { .venv/bin/python scripts/pins.py check >/dev/null || true; }
.venv/bin/python -c "import studio, torch, onnxruntime, rembg, transparent_background, ray" 2>/dev/null \
  && echo "setup: ok (.venv)"
