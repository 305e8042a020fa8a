"""`python -m pipeline.report OUT [--task ...]`: `cxr report OUT` itself."""

import sys

from pipeline import cli

sys.exit(cli.main(["report"] + sys.argv[1:]))
