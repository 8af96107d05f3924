"""``python -m qa``: the command line (see :mod:`qa.tools.cli`)."""

import sys

from qa.tools.cli import main

sys.exit(main())
