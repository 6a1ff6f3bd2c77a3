"""``python -m conformance`` is the ``xent`` command."""
import sys

from .cli import main

sys.exit(main())
