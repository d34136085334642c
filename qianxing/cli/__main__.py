"""`python -m qianxing.cli ...`: how benchmarks, tests and the dev server start commands."""

import sys

from qianxing.cli import main

sys.exit(main())
