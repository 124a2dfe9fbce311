"""``python -m cloud_server``: the same as ``splitinfer serve``."""
import sys

from .cli import main

sys.exit(main())
