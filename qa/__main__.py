"""``python -m qa``: the command line (see :mod:`qa.cli`)."""

import sys

from qa.cli import main

sys.exit(main())
