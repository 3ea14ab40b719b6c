"""``python -m uascall``: the same as the ``uascall`` command."""

import sys

from uascall.cli import main

sys.exit(main())
