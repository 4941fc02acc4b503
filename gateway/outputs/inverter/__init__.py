"""The inverter side: what the gateway tells the inverter, and what it hears back.

One module per protocol family; this package's surface is what the core, the service and replay use.
"""

from gateway.outputs.inverter.pylon_lv import (
    INVERTER_IDS,
    PROFILES,
    STALE_AFTER,
    InverterLink,
    InverterPublisher,
    Profile,
    Schedule,
    alarm_markdown,
    frames,
    update_docs,
)

__all__ = [
    "INVERTER_IDS",
    "PROFILES",
    "STALE_AFTER",
    "InverterLink",
    "InverterPublisher",
    "Profile",
    "Schedule",
    "alarm_markdown",
    "frames",
    "update_docs",
]
