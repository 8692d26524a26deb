"""``python -m smoothcache``: the same command line as ``smoothcache``."""

import sys

from smoothcache.cli import main

sys.exit(main())
