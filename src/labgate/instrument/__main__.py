"""`python -m labgate.instrument CONFIG.json`: the child side of `run_in_process`."""

import sys

from labgate.instrument.process import main

sys.exit(main(sys.argv))
