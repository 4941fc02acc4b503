"""`python -m gateway.outputs.inverter README.md docs/inverter.md`: rewrite the generated parts of those files."""

import sys
from pathlib import Path

from gateway.outputs.inverter.docs import rewrite

rewrite([Path(arg) for arg in sys.argv[1:]])
