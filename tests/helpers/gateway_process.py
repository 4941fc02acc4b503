"""The gateway in a process of its own, with its own simulated modules, for tests that kill it (SIGKILL).

    python tests/helpers/gateway_process.py CONFIG [MODULES]

python-can's virtual bus lives inside one process, so the simulator runs here, beside the gateway, as the demo
runs it: `gateway.cli._serve` with the simulator as an extra task. Logs go to stderr at warning level.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from gateway import config, logs
from gateway.can.bus import open_bus
from gateway.cli import _serve
from gateway.sim import Simulator
from gateway.sim.bus import run_on_bus


def main(argv: Sequence[str]) -> int:
    cfg = config.load(argv[1])
    modules = int(argv[2]) if len(argv) > 2 else 2
    logs.configure("warning", "console")
    sim = Simulator(modules=modules, current=5.0)
    m = cfg.can.modules[0]

    async def simulate() -> None:
        bus = open_bus(m.interface, m.channel, m.rate)
        try:
            await run_on_bus(bus, sim, duration=None)
        finally:
            bus.shutdown()

    return asyncio.run(_serve(cfg, reload_from=None, extra={"simulator": simulate}))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
