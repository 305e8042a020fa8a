"""`python -m pipeline.report OUT [--task ...]`: `cxr report` on its own."""

import sys

from pipeline.report import command

sys.exit(command.main())
