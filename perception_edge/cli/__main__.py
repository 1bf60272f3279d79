"""`python -m perception_edge.cli`: the perception-edge command."""
from __future__ import annotations

import sys

from perception_edge.cli import main

sys.exit(main())
