"""The inverter side: what the gateway tells the inverter, and what it hears back.

- `profiles`: what a profile is (a row: DBC, frames, periods, mode, options, expected inverter frames, rules);
  `table`: every profile, by name; one module per protocol family builds its frames' values (`pylon_lv`, ...).
- `encode.frames(snapshot, profile, options, parts)`: the payloads, through the profile's DBC. Pure.
- `schedule.Schedule`: when what goes out (periods, the fast path, answers, handshakes, stale -> fail-safe). Pure.
- `link.InverterLink`: the inverter's frames, heard; `publisher.InverterPublisher`: moves bytes.
"""

from gateway.outputs.inverter.encode import Frame, frames
from gateway.outputs.inverter.link import InverterLink
from gateway.outputs.inverter.profiles import Mode, Options, Profile
from gateway.outputs.inverter.publisher import InverterPublisher
from gateway.outputs.inverter.schedule import FAST_INTERVAL, STALE_AFTER, Heard, Schedule, State
from gateway.outputs.inverter.table import ALIASES, PROFILES, profile

__all__ = [
    "ALIASES",
    "FAST_INTERVAL",
    "PROFILES",
    "STALE_AFTER",
    "Frame",
    "Heard",
    "InverterLink",
    "InverterPublisher",
    "Mode",
    "Options",
    "Profile",
    "Schedule",
    "State",
    "frames",
    "profile",
]
