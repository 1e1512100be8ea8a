"""`python -m loopwise <command>`."""

import sys

from loopwise.cli import main

sys.exit(main())
