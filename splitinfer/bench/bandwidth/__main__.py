"""``python -m splitinfer.bench.bandwidth _worker``: the benchmark's client process (internal)."""
import sys

from .worker import main

if len(sys.argv) > 1 and sys.argv[1] == "_worker":
    sys.exit(main())
sys.exit("usage: splitinfer bench bandwidth ...  (python -m splitinfer.bench.bandwidth _worker is internal)")
