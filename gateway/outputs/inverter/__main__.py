"""`python -m gateway.outputs.inverter docs/inverter.md`: rewrite the generated part of the docs file."""

import sys

from gateway.outputs.inverter.pylon_lv import main

main(sys.argv[1:])
