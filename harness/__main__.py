"""``python -m harness``: the `harness` command, as ``accelerate launch -m harness run ...`` starts it."""

import sys

from harness.cli import main

sys.exit(main())
