"""`python -m engine` is the `detect` command."""

import sys

from engine.cli import main

sys.exit(main())
