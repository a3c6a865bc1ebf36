"""``python -m dsprep`` is the ``dsprep`` command."""
import sys

from .cli import main

sys.exit(main())
