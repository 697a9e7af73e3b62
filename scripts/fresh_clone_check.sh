#!/usr/bin/env bash
# A fresh machine, simulated: a clean clone with no ../shared beside it, no npm on PATH, and a
# local mirror on 127.0.0.1 standing in for the release hosts (STUDIO_MIRROR). It fetches
# IS-Net, builds the int8-static builds from their committed calibration ranges, compares
# their sha256 with this checkout's builds, exports one, serves it and calls it with curl,
# and gives the IoU of the served mask against `studio predict`'s.
#
#   scripts/fresh_clone_check.sh [WORKDIR]      # needs `make setup` and `studio weights pull` here first
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=$REPO/.venv/bin/python
WORK=${1:-$(mktemp -d /tmp/fresh-clone.XXXXXX)}
PORT=${MIRROR_PORT:-8765}
SERVE_PORT=${SERVE_PORT:-7811}
BUILDS=(isnet-general-use-int8-static isnet-general-use-cpu)
mkdir -p "$WORK"
echo "work folder: $WORK"

# 1. the mirror: this machine's verified files in the layout `wget -x` writes, served over HTTP
"$PY" -m studio.weights.mirror layout "$WORK/mirror" >/dev/null
"$PY" -m studio.weights.mirror serve "$WORK/mirror" --port "$PORT" >"$WORK/mirror.log" 2>&1 &
MIRROR_PID=$!
SERVER_PID=
trap 'kill $MIRROR_PID ${SERVER_PID:-} 2>/dev/null || true' EXIT
echo "mirror files:"; (cd "$WORK/mirror" && find . -type f | sort | sed 's/^/  /')

# 2. the clean clone: committed files only, nothing beside it
rm -rf "$WORK/clone"
git clone -q "$REPO" "$WORK/clone"
test ! -e "$WORK/shared" || { echo "a shared folder exists beside the clone" >&2; exit 1; }

# 3. a PATH with python and a few tools, and no npm
mkdir -p "$WORK/bin" "$WORK/home"
for tool in curl sha256sum cat sleep; do ln -sf "$(command -v $tool)" "$WORK/bin/$tool"; done
printf '#!/bin/sh\nexec "%s" "$@"\n' "$PY" >"$WORK/bin/python"  # (a symlink would lose the venv)
chmod +x "$WORK/bin/python"
cat >"$WORK/bin/studio" <<EOF
#!/bin/sh
exec "$PY" -c 'import sys; sys.argv[0] = "studio"; from studio.cli import main; sys.exit(main())' "\$@"
EOF
chmod +x "$WORK/bin/studio"
run() { env -i HOME="$WORK/home" PATH="$WORK/bin" PYTHONPATH="$WORK/clone" \
        STUDIO_MIRROR="http://127.0.0.1:$PORT" OMP_NUM_THREADS=2 "$@"; }
cd "$WORK/clone"
run python -c 'import shutil, studio; print("studio from", studio.__file__, "| npm on PATH:", shutil.which("npm"))'

echo; echo "== fetch through the mirror"
run studio weights pull isnet-general-use
echo; echo "== build from the committed ranges (no ../shared, no npm)"
run studio build "${BUILDS[@]}"
echo; echo "== sha256: this clone / the checkout at $REPO"
for b in "${BUILDS[@]}"; do
  here=$(sha256sum "$WORK"/clone/models/builds/$b/*/model.onnx | cut -c1-64)
  there=$(sha256sum "$REPO"/models/builds/$b/*/model.onnx 2>/dev/null | cut -c1-64 || true)
  echo "  $b: $here / ${there:-(not built there)} -> $([ "$here" = "$there" ] && echo same || echo DIFFERENT)"
done
for f in isnet-general-use-fp16.onnx isnet-general-use.onnx; do
  echo "  $f: $(sha256sum "$WORK/clone/models/weights/$f" | cut -c1-64)"
done

echo; echo "== export, serve, call with curl"
rm -rf "$WORK/bundle"
run studio export isnet-general-use-int8-static "$WORK/bundle"
(cd "$WORK/bundle" && exec env -i HOME="$WORK/home" PATH="$WORK/bin" python serve.py --port "$SERVE_PORT" \
   >"$WORK/serve.log" 2>&1) &
SERVER_PID=$!
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$SERVE_PORT/healthz" >/dev/null && break; sleep 0.5; done
curl -s "http://127.0.0.1:$SERVE_PORT/healthz"; echo
IMAGE=$WORK/photo.png
run python -c "from studio.data import open_dataset; from PIL import Image; \
s = open_dataset(None).samples[0]; Image.fromarray(s.image()).save('$IMAGE'); print('image: embedded', s.id, s.image().shape)"
curl -s -o "$WORK/served_mask.png" -w "POST /api/remove om=true -> HTTP %{http_code}, %{size_download} bytes\n" \
     -F "file=@$IMAGE" -F "om=true" "http://127.0.0.1:$SERVE_PORT/api/remove"
run studio predict -m isnet-general-use-int8-static "$IMAGE" -o "$WORK/studio_mask.png"
run python -c "
from studio.imageio import load_mask
from studio.metrics import iou
a, b = load_mask('$WORK/served_mask.png'), load_mask('$WORK/studio_mask.png')
print(f'IoU of the served mask against studio predict: {iou(a, b):.6f}; identical pixels: {(a == b).mean():.6f}')"
