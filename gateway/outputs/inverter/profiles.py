"""What a profile is: one row of data. The table itself is `gateway.outputs.inverter.table.PROFILES`.

A profile names its DBC, the frames it sends and how often, its mode, its options, the inverter frames it
expects (and the silence after which the master raises `inverter_comm_lost`), its alarm column, and the rules by
which the inverter's frames are answered. A new protocol is a DBC, its builders (values for each frame) and a
row; code changes only for a new *mode*, and there are three:

- broadcast: the groups go out every period from the start (the Pylon LV family, GoodWe LV, Sofar, sma-sbs);
- request/response: nothing goes out unasked; a rule answers each request at once (Pylon HV, Growatt LV,
  Solax, FoxESS);
- handshake: nothing goes out until the inverter has spoken (or paired); then rules and groups as above (BYD
  HVS, SMA HV, Growatt HV, Sungrow).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from gateway.master.model import BankSnapshot

Part = tuple[int, int]
"""A frame the gateway sends: (DBC frame ID, part). Most frames have one part (0); a frame sent several times with
different contents in one go (BYD's four 0x3D0 with the name, Sofar's answers) has one part per content."""


class Mode(enum.Enum):
    BROADCAST = "broadcast"
    REQUEST = "request/response"
    HANDSHAKE = "handshake"


@dataclass(frozen=True, slots=True)
class Group:
    """Frames sent together, every `period` seconds (None: `can.inverter.period`)."""

    parts: tuple[Part, ...]
    period: float | None = None
    on_change: bool = False
    """Sent when what it carries changes (and once at the start), not every period (Sofar's 0x35A)."""


Where = tuple[int, int, int | str]
"""(byte index, mask, value): the request's byte, masked, must equal the value, or the option of that name."""


@dataclass(frozen=True, slots=True)
class Trigger:
    """An inverter frame that asks for something: one of `ids`, with payload bytes as `where` says."""

    ids: frozenset[int]
    where: tuple[Where, ...] = ()

    def matches(self, can_id: int, data: bytes, options: Options) -> bool:
        if can_id not in self.ids:
            return False
        for index, mask, value in self.where:
            expected = getattr(options, value) if isinstance(value, str) else value
            if index >= len(data) or data[index] & mask != expected:
                return False
        return True

    def describe(self) -> str:
        ids = "/".join(f"0x{i:X}" for i in sorted(self.ids))
        if not self.where:
            return ids
        conditions = []
        for index, mask, value in self.where:
            shown = value if isinstance(value, str) else f"{value:#04x}"
            conditions.append(f"b{index}={shown}" if mask == 0xFF else f"b{index}&{mask:#04x}={shown}")
        return f"{ids} {' '.join(conditions)}"


def payload(can_id: int, text: str) -> Trigger:
    """A trigger on the whole payload, written as hex bytes (`"02 00 01 00 01 00 00 00"`)."""
    return Trigger(frozenset({can_id}), tuple((i, 0xFF, b) for i, b in enumerate(bytes.fromhex(text))))


@dataclass(frozen=True, slots=True)
class Rule:
    """In a session state of `when` (None: any), an inverter frame that `trigger` matches is answered with
    `parts` (the first at once, the next `spacing` s apart), and the session moves to `then` once they are all out
    (None: it stays). The first rule that matches wins."""

    name: str
    trigger: Trigger
    parts: tuple[Part, ...] = ()
    when: frozenset[str] | None = None
    then: str | None = None
    spacing: float = 0.0


@dataclass(frozen=True, slots=True)
class Options:
    """Everything a profile may be told by `[can.inverter]` besides its name. Each profile lists the keys it
    honours; the others keep these defaults."""

    byte_order: Literal["little", "big"] = "little"
    current_offset: bool = False
    id_suffix: int = 0
    battery_id: int = 0
    deye_soc_workaround: bool = False

    @property
    def id_offset(self) -> int:
        """What is added to every DBC frame ID on the wire: Sofar's IDs ending in 1 (pylon-hv `id_suffix`),
        Sofar's battery ID in bits 12-15."""
        return self.id_suffix + (self.battery_id << 12)


@dataclass(frozen=True, slots=True)
class SimFrame:
    """A frame the simulated inverter sends: at `start` s after it starts, then every `every` s (None: once)."""

    can_id: int
    data: str
    start: float = 0.0
    every: float | None = 1.0


@dataclass(frozen=True, slots=True)
class Wiring:
    """The wiring note of the README: who uses the profile, and how to connect and set up the inverter."""

    brands: str
    bitrate: int = 500_000
    termination: str = "120 ohm at each end of the bus"
    menu: str = ""


Builder = Callable[["Input"], Mapping[str, float | None]]


@dataclass(frozen=True, slots=True)
class Input:
    """One snapshot as a frame builder sees it."""

    snapshot: BankSnapshot
    """The snapshot shown: the fail-safe one when the master cannot vouch for the bank."""
    active: frozenset[str]
    """The DBC signal names of the profile's alarm column that are active (at either level)."""
    options: Options
    cells_in_series: int
    """Cells in series per module (`bank.cells_in_series`)."""
    modules_count: int = 0
    """Modules online (Pylon's 0x359 byte 4 may be told otherwise)."""
    session: str = "idle"
    part: int = 0
    request: bytes = b""
    """The inverter frame being answered (b"" for a cyclic frame)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """One row of the profile table."""

    name: str
    family: str
    """The module under gateway/outputs/inverter/ that builds its frames (and its docs section)."""
    dbc: str
    """Its DBC under dbc/inverters/."""
    mode: Mode
    builders: Mapping[int, Builder]
    """DBC frame ID -> the values of its signals for an `Input`."""
    alarm_column: str
    """Its column of gateway/outputs/alarm_table.py (`COLUMNS`)."""
    groups: tuple[Group, ...] = ()
    rules: tuple[Rule, ...] = ()
    expects: frozenset[int] = frozenset()
    """The inverter's frames: each one heard refreshes `last_seen`; the rules are matched against them."""
    timeout: float = 30.0
    """Seconds without any expected frame (after one was seen) before `inverter_comm_lost`, unless
    `can.inverter.inverter_timeout` says otherwise."""
    extended: bool = False
    """29-bit IDs, both ways."""
    cyclic_in: frozenset[str] | None = None
    """Session states in which the groups go out (None: always, the broadcast mode)."""
    initial: str = "idle"
    reset_after: float | None = None
    """No expected frame for this long: the session goes back to `initial` (Solax re-announces after 2 s)."""
    paired: frozenset[str] | None = None
    """Session states shown as "paired" in the live view (None: the profile has no pairing)."""
    urgent: frozenset[int] | None = None
    """Frames the fast path sends at once on a protective change (None: every frame of the groups)."""
    options: frozenset[str] = frozenset()
    """The `[can.inverter]` option keys it honours."""
    defaults: Options = field(default_factory=Options)
    offset_signals: frozenset[str] = frozenset()
    """Signals whose offset `current_offset = false` removes."""
    identify: Callable[[int, bytes], str | None] | None = None
    """The inverter's name from one of its frames, if the protocol carries it."""
    sim: tuple[SimFrame, ...] = ()
    """What the simulated inverter of gateway/sim/inverter.py sends (`bms-gateway demo --inverter`)."""
    wiring: Wiring = field(default_factory=lambda: Wiring(""))
    notes: str = ""
    """What the sources disagree on, what is not sent and why: the table's note."""
    sources: str = ""
    """The public implementations its frame facts were checked against."""
    period: float | None = None
    """The period of groups without one of their own, when not `can.inverter.period` (SMA Sunny Island: 0.1 s)."""
    high_voltage: bool = False
    """A high-voltage battery's protocol (a tower of modules in series); the demo builds one string for it."""

    @property
    def parts(self) -> tuple[Part, ...]:
        """Every part the profile can send, groups first, then answers, in order, each once."""
        seen: dict[Part, None] = {}
        for group in self.groups:
            seen.update(dict.fromkeys(group.parts))
        for rule in self.rules:
            seen.update(dict.fromkeys(rule.parts))
        return tuple(seen)

    @property
    def frame_ids(self) -> tuple[int, ...]:
        """The DBC frame IDs of the groups, in sending order (each once)."""
        return tuple(dict.fromkeys(frame_id for group in self.groups for frame_id, _ in group.parts))

    @property
    def urgent_ids(self) -> frozenset[int]:
        return self.urgent if self.urgent is not None else frozenset(self.frame_ids)


def parts(*frame_ids: int) -> tuple[Part, ...]:
    """One part each."""
    return tuple((frame_id, 0) for frame_id in frame_ids)


def repeated(frame_id: int, count: int) -> tuple[Part, ...]:
    """`count` parts of one frame ID (0..count-1)."""
    return tuple((frame_id, n) for n in range(count))
