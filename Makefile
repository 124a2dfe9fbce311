# The two commands for a fresh machine: `make demo` and `make test`.
.PHONY: demo test test-slow test-all

demo:
	scripts/setup.sh runtime
	.venv/bin/splitinfer demo

# the default suite, about two minutes; the slow checks (training, sweeps, 100k-frame memory) apart
test:
	scripts/setup.sh dev
	.venv/bin/python -m pytest -q -m "not slow"

test-slow:
	scripts/setup.sh dev
	.venv/bin/python -m pytest -q -m slow

test-all: test test-slow
