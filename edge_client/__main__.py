"""``python -m edge_client``: the same as ``splitinfer stream``."""
import sys

from .cli import main

sys.exit(main())
