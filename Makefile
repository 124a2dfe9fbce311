# The two commands for a fresh machine: `make demo` and `make test`.
.PHONY: demo test

demo:
	scripts/setup.sh runtime
	.venv/bin/splitinfer demo

test:
	scripts/setup.sh dev
	.venv/bin/python -m pytest -q
