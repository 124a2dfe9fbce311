"""``python -m splitinfer.sidecar [--host H] [--port P] [--models DIR] ...``"""
import sys

from .cli import main

sys.exit(main())
