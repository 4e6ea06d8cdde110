"""`python -m simulators SCENARIO...`, the same as `pyuse sim`."""

import sys

from simulators.cli import main

sys.exit(main())
