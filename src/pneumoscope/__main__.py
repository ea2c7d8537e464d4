"""``python -m pneumoscope`` (also what torchrun launches with ``-m pneumoscope``)."""

import sys

from .cli import main

sys.exit(main())
