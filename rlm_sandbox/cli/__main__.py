"""`python -m rlm_sandbox.cli`: the same as the `rlm-sandbox` command."""

import sys

from . import main

sys.exit(main())
