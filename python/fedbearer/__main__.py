"""``python -m fedbearer``: the same as the ``fedbearer`` command."""

import sys

from fedbearer.cli import main

sys.exit(main())
