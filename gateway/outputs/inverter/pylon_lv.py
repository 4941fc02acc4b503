"""The inverter side: one well-behaved Pylontech-style battery on CAN, whatever the stack does underneath.

Three layers, so that replay and tests see exactly what the gateway would transmit:
- `frames(snapshot, profile)` encodes a snapshot with dbc/inverters/pylontech.dbc into (frame ID, payload) pairs. Pure.
- `Schedule` decides when: the whole set every period, and at once (at most 10 sets a second) when a change
  protects the battery (a current limit falls materially or to 0, a voltage limit tightens materially, a
  protection is raised, a request flag changes, the set turns fail-safe); a master that stops ticking gets the
  fail-safe set. Pure as well: it is handed "now".
- `InverterPublisher` only moves bytes, from its own loop. Never python-can's periodic sender: if this process
  hung, the kernel would go on sending the last limits, and the inverter would trust them.
`InverterLink` decodes what the inverter sends back (0x305 keep-alive, 0x307 identification).

Values are never computed here (the master owns limits, flags and alarms); they are only rounded, in the
direction that never raises a limit, and clamped to each field's range.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from pathlib import Path
from types import MappingProxyType

import can
from cantools.database.can import Database, Message, Signal

from gateway import __version__
from gateway.can import dbc
from gateway.clock import Clock
from gateway.config import BankSection, InverterBusSection, InverterProtocol
from gateway.hub import SnapshotHub
from gateway.logs import BurstLog, get
from gateway.master.model import BankSnapshot, Flags, InverterInfo, Level, Lifecycle
from gateway.outputs import generated
from gateway.outputs.alarm_table import PYLONTECH, NotSent

log = get("gateway.inverter")

KEEPALIVE = 0x305
IDENTIFICATION = 0x307
INVERTER_IDS = frozenset({KEEPALIVE, IDENTIFICATION})
"""Frames the inverter sends; everything else on the inverter bus is ignored (python-can does not echo ours)."""

STALE_AFTER = 2.0
"""A snapshot older than this (s) means the master stopped ticking: the inverter gets the fail-safe set."""
FAST_INTERVAL = 0.1
"""Protective changes go out at once, but at most one extra set per this many seconds (10/s)."""
CURRENT_FALL_A = 1.0
CURRENT_FALL_PERCENT = 2.0
"""CCL or DCL goes out at once when it falls to 0 or by more than max(CURRENT_FALL_A, this percent of the bank's
rating) below what the inverter last got. Smaller falls (current shares drift every tick) wait for the period."""
VOLTAGE_FALL_PERCENT = 1.0
"""CVL falling (DVL rising) by more than this percent of what the inverter last got goes out at once."""
NAME_LOG_INTERVAL = 60.0
""""inverter seen" is logged when the inverter's name changes, at most once per this many seconds of frame time:
a bus that carries other traffic on 0x307 (or a log with random IDs) decodes a new "name" from every frame."""
_SLACK = 1e-3
"""A fast send this close to the end of the rate limit counts as allowed: ticks that add up 0.1 s land a hair early."""
TICK_SLACK = 0.05
"""Half the default master tick: a periodic set is due at the tick nearest its time (see `Schedule._slack`)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """One row of the profile table: the frames a kind of receiver expects, in sending order."""

    name: InverterProtocol
    frame_ids: tuple[int, ...]
    period: float | None = None
    """A period (s) the receivers of this profile expect; None means `can.inverter.period`."""


_PYLON_12 = (0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E)
_VICTRON = (*_PYLON_12, 0x35A, 0x35F, 0x372, 0x373, 0x379)
PROFILES: Mapping[InverterProtocol, Profile] = MappingProxyType(
    {
        "pylontech": Profile("pylontech", _PYLON_12),
        "pylontech-1.3": Profile("pylontech-1.3", (0x351, 0x355, 0x356, 0x35A, 0x35E, 0x35F)),
        "victron": Profile("victron", _VICTRON),
        "sma": Profile("sma", _VICTRON, period=0.1),
    }
)
"""What each `can.inverter.protocol` sends, in this order, and how often (docs/inverter.md has the same table)."""

_PYLON_BITS = (
    "OverVoltage",
    "UnderVoltage",
    "OverTemperature",
    "UnderTemperature",
    "DischargeOverCurrent",
    "ChargeOverCurrent",
    "InternalError",
)
_PAIRS = (
    "HighVoltage",
    "LowVoltage",
    "HighTemperature",
    "LowTemperature",
    "HighTemperatureCharge",
    "LowTemperatureCharge",
    "HighDischargeCurrent",
    "HighChargeCurrent",
    "Contactor",
    "ShortCircuit",
    "BmsInternal",
    "CellImbalance",
)
_PYLON_PREFIX = {Level.PROTECTION: "Protection", Level.WARNING: "Warning"}
_PAIR_PREFIX = {Level.PROTECTION: "Alarm", Level.WARNING: "Warning"}
_ACTIVE, _OK = 1, 2
_INVALID = ("InternalError", "BmsInternal")
"""What an invalid snapshot raises, at protection level: the inverter shows why it was stopped."""

_ROUNDING = {
    "ChargeVoltageLimit": ROUND_FLOOR,
    "ChargeCurrentLimit": ROUND_FLOOR,
    "DischargeCurrentLimit": ROUND_FLOOR,
    "DischargeVoltageLimit": ROUND_CEILING,
    "OnlineCapacity": ROUND_FLOOR,
    "InstalledCapacity": ROUND_FLOOR,
}
"""Rounding never raises a limit (nor the capacity); every other field rounds to nearest."""

_version = re.match(r"(\d+)\.(\d+)", __version__)
_FIRMWARE = (int(_version[1]), int(_version[2])) if _version else (0, 0)
_KELVIN = 273.15


def _ascii(text: str) -> int:
    """Text as the little-endian integer a DBC signal carries it as (first character in the lowest byte)."""
    return int.from_bytes(text.encode("ascii"), "little")


def _text(value: int, length: int) -> str:
    """The printable ASCII in a text signal; NULs and padding spaces dropped."""
    return "".join(chr(b) for b in value.to_bytes(length, "little") if 0x20 <= b < 0x7F).strip()


# -- encoding (pure) ------------------------------------------------------------------------------------------


def _to_raw(signal: Signal, value: float, rounding: str) -> int:
    """Physical -> raw in decimal, so that 55.2 V is 552 and not 551 after a float division."""
    exact = Decimal(value) if isinstance(value, int) else Decimal(repr(float(value)))
    raw = (exact - Decimal(repr(signal.offset))) / Decimal(repr(signal.scale))
    return int(raw.to_integral_value(rounding=rounding))


@dataclass(frozen=True, slots=True)
class _Field:
    signal: Signal
    rounding: str
    low: int
    high: int

    @classmethod
    def of(cls, signal: Signal) -> _Field:
        """The signal's raw range: its bit width, narrowed by the DBC's [minimum|maximum]."""
        low = -(2 ** (signal.length - 1)) if signal.is_signed else 0
        high = 2 ** (signal.length - 1) - 1 if signal.is_signed else 2**signal.length - 1
        if signal.minimum is not None:
            low = max(low, _to_raw(signal, signal.minimum, ROUND_CEILING))
        if signal.maximum is not None:
            high = min(high, _to_raw(signal, signal.maximum, ROUND_FLOOR))
        return cls(signal, _ROUNDING.get(signal.name, ROUND_HALF_UP), low, high)

    def raw(self, value: float | None) -> int:
        """Rounded as the field requires and clamped to its range. Unknown or non-finite values take the safe
        end: the lowest CVL/CCL/DCL, the highest DVL, 0 for a measurement."""
        if value is None or not math.isfinite(value):
            raw = {ROUND_FLOOR: self.low, ROUND_CEILING: self.high}.get(self.rounding, 0)
        else:
            raw = _to_raw(self.signal, value, self.rounding)
        return min(max(raw, self.low), self.high)


class _Codec:
    """dbc/inverters/pylontech.dbc, loaded once, with each signal's rounding and raw range worked out ahead."""

    def __init__(self, db: Database) -> None:
        self.messages: dict[int, Message] = {m.frame_id: m for m in db.messages}
        self.fields = {m.frame_id: {s.name: _Field.of(s) for s in m.signals} for m in db.messages}

    def encode(self, frame_id: int, values: Mapping[str, float | None]) -> bytes:
        """Every signal of the frame must be given (strict): a DBC and code that drift apart fail loudly."""
        fields = self.fields[frame_id]
        raw = {name: fields[name].raw(value) for name, value in values.items()}
        return bytes(self.messages[frame_id].encode(raw, scaling=False, strict=True))


@functools.cache
def _codec() -> _Codec:
    return _Codec(dbc.load(None, "inverters/pylontech.dbc", "dbc/inverters/pylontech.dbc"))


@dataclass(frozen=True, slots=True)
class _Input:
    """One snapshot as the frames see it: the snapshot, its alarms sorted into bits and pairs, module count."""

    snapshot: BankSnapshot
    bits: frozenset[tuple[str, Level]]
    pairs: frozenset[tuple[str, Level]]
    modules_count: int


_Values = Mapping[str, float | None]


def _limits(i: _Input) -> _Values:
    lim = i.snapshot.limits
    return {
        "ChargeVoltageLimit": lim.charge_voltage.value,
        "ChargeCurrentLimit": lim.charge_current.value,
        "DischargeCurrentLimit": lim.discharge_current.value,
        "DischargeVoltageLimit": lim.discharge_voltage.value,
    }


def _soc(i: _Input) -> _Values:
    return {"StateOfCharge": i.snapshot.soc, "StateOfHealth": i.snapshot.soh}


def _status(i: _Input) -> _Values:
    s = i.snapshot
    return {
        "BatteryVoltage": s.voltage,
        "BatteryCurrent": s.current,
        "BatteryTemperature": None if s.temperature_max is None else s.temperature_max.value,
    }


def _protections(i: _Input) -> _Values:
    values: dict[str, float | None] = {
        f"{prefix}{bit}": int((bit, level) in i.bits) for level, prefix in _PYLON_PREFIX.items() for bit in _PYLON_BITS
    }
    values["ModuleCount"] = i.modules_count
    values["ManufacturerCode"] = _ascii("PN")
    return values


def _alarm_pairs(i: _Input) -> _Values:
    values: dict[str, float | None] = {}
    for level, prefix in _PAIR_PREFIX.items():
        active = {pair for pair, at in i.pairs if at is level}
        values[f"{prefix}General"] = _ACTIVE if active else _OK
        values.update({f"{prefix}{pair}": _ACTIVE if pair in active else _OK for pair in _PAIRS})
    return values


def _requests(i: _Input) -> _Values:
    f = i.snapshot.flags
    return {
        "ChargeEnable": int(f.charge_enable),
        "DischargeEnable": int(f.discharge_enable),
        "ForceChargeRequest1": int(f.force_charge),
        "ForceChargeRequest2": int(f.force_charge),
        "FullChargeRequest": int(f.full_charge),
    }


def _manufacturer(_: _Input) -> _Values:
    return {"ManufacturerName": _ascii("PYLON   ")}


def _info(i: _Input) -> _Values:
    return {
        "Chemistry": _ascii("LI"),
        "FirmwareMajor": _FIRMWARE[0],
        "FirmwareMinor": _FIRMWARE[1],
        "OnlineCapacity": i.snapshot.full_ah,
    }


def _module_counts(i: _Input) -> _Values:
    online = [v for v in i.snapshot.modules.values() if v.lifecycle is Lifecycle.ONLINE]
    return {
        "ModulesOnline": len(online),
        "ModulesBlockingCharge": sum(1 for v in online if v.limits is None or v.limits.charge_current.value <= 0),
        "ModulesBlockingDischarge": sum(1 for v in online if v.limits is None or v.limits.discharge_current.value <= 0),
        "ModulesOffline": len(i.snapshot.modules) - len(online),
    }


def _cell_extremes(i: _Input) -> _Values:
    s = i.snapshot
    vmin, vmax, tmin, tmax = s.cell_voltage_min, s.cell_voltage_max, s.temperature_min, s.temperature_max
    return {
        "MinCellVoltage": None if vmin is None else vmin.value,
        "MaxCellVoltage": None if vmax is None else vmax.value,
        "MinCellTemperature": None if tmin is None else tmin.value + _KELVIN,
        "MaxCellTemperature": None if tmax is None else tmax.value + _KELVIN,
    }


def _installed(i: _Input) -> _Values:
    return {"InstalledCapacity": i.snapshot.full_ah}


_BUILDERS: Mapping[int, Callable[[_Input], _Values]] = MappingProxyType(
    {
        0x351: _limits,
        0x355: _soc,
        0x356: _status,
        0x359: _protections,
        0x35A: _alarm_pairs,
        0x35C: _requests,
        0x35E: _manufacturer,
        0x35F: _info,
        0x372: _module_counts,
        0x373: _cell_extremes,
        0x379: _installed,
    }
)


def _input(snapshot: BankSnapshot, modules_count: int | None) -> _Input:
    bits: set[tuple[str, Level]] = set()
    pairs: set[tuple[str, Level]] = set()
    for alarm in snapshot.alarms:
        mapped = PYLONTECH[alarm.code]
        if isinstance(mapped, NotSent):
            continue
        if mapped.bit is not None:
            bits.add((mapped.bit, alarm.level))
        pairs.add((mapped.pair, alarm.level))
    if not snapshot.valid:
        bits.add((_INVALID[0], Level.PROTECTION))
        pairs.add((_INVALID[1], Level.PROTECTION))
    if modules_count is None:
        modules_count = len(snapshot.addresses(Lifecycle.ONLINE))
    return _Input(snapshot, frozenset(bits), frozenset(pairs), modules_count)


def _shown(snapshot: BankSnapshot) -> BankSnapshot:
    """An invalid snapshot always goes out as the fail-safe set, whoever built it (the master already does)."""
    return snapshot if snapshot.valid else snapshot.failsafe(snapshot.reason)


def frames(snapshot: BankSnapshot, profile: Profile, *, modules_count: int | None = None) -> list[tuple[int, bytes]]:
    """The (frame ID, payload) pairs of `profile` for this snapshot, in the profile's order.

    `modules_count` (0x359 byte 4) defaults to the modules online; some inverters derive capacity from it.
    """
    i = _input(_shown(snapshot), modules_count)
    codec = _codec()
    return [(frame_id, codec.encode(frame_id, _BUILDERS[frame_id](i))) for frame_id in profile.frame_ids]


# -- docs ------------------------------------------------------------------------------------------------------

DOCS_COMMAND = "python -m gateway.outputs.inverter docs/inverter.md"
"""The generated part of docs/inverter.md: its alarm table."""


def alarm_markdown() -> str:
    """The alarm table of docs/inverter.md: `PYLONTECH` in its order, then what an invalid snapshot raises."""
    rows = ["| alarm code | 0x359 bit | 0x35A pair |", "|---|---|---|"]
    for code, mapped in PYLONTECH.items():
        if isinstance(mapped, NotSent):
            rows.append(f"| `{code}` | none | none |")
        else:
            bit = "none (0x359 has no such bit)" if mapped.bit is None else f"`{mapped.bit}`"
            rows.append(f"| `{code}` | {bit} | `{mapped.pair}` |")
    rows.append(f"| (snapshot not valid) | `{_INVALID[0]}`, protection | `{_INVALID[1]}`, alarm |")
    return "\n".join(rows)


def update_docs(text: str) -> str:
    """`text` (docs/inverter.md) with its generated part replaced by the current one."""
    return generated.splice(text, DOCS_COMMAND, alarm_markdown())


# -- when to send (pure) ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Watch:
    """What decides whether a set must go out before its period, in the raw units of 0x351 (0.1 A, 0.1 V)."""

    valid: bool
    charge_voltage: int
    charge_current: int
    discharge_current: int
    discharge_voltage: int
    voltage: int | None
    """The bank voltage, to tell when CVL or DVL crosses it."""
    charge_step: int
    discharge_step: int
    """The largest fall of CCL / DCL (raw) that may wait for the period."""
    protections: frozenset[str]
    requests: Flags

    def protects(self, sent: _Watch) -> bool:
        """True when the inverter must learn this now: the fail-safe set, a material fall of a limit, a new
        protection, a changed request flag."""
        return (
            (sent.valid and not self.valid)
            or _current_falls(self.charge_current, sent.charge_current, self.charge_step)
            or _current_falls(self.discharge_current, sent.discharge_current, self.discharge_step)
            or _tightens(self.charge_voltage, sent.charge_voltage, self.voltage, sent.voltage)
            or _tightens(
                -self.discharge_voltage, -sent.discharge_voltage, _negated(self.voltage), _negated(sent.voltage)
            )
            or not self.protections <= sent.protections
            or self.requests != sent.requests
        )


def _current_falls(now: int, sent: int, step: int) -> bool:
    return now < sent and (now <= 0 or sent - now > step)


def _tightens(now: int, sent: int, voltage: int | None, sent_voltage: int | None) -> bool:
    """A voltage limit fell by more than VOLTAGE_FALL_PERCENT of what was sent, or from above the bank voltage (when
    sent) to it or below: charging must stop now. DVL is passed negated (with the voltages), so that one rule
    serves both: its rise is a fall here."""
    if now >= sent:
        return False
    if 100 * (sent - now) > VOLTAGE_FALL_PERCENT * abs(sent):
        return True
    return voltage is not None and sent_voltage is not None and now <= voltage and sent > sent_voltage


def _negated(value: int | None) -> int | None:
    return None if value is None else -value


def _strings_online(snapshot: BankSnapshot) -> int:
    """Parallel strings whose modules are all online: what the bank's rating counts."""
    modules = snapshot.modules
    return sum(
        1 for s in snapshot.strings if s and all(a in modules and modules[a].lifecycle is Lifecycle.ONLINE for a in s)
    )


def _watch(snapshot: BankSnapshot, bank: BankSection) -> _Watch:
    i = _input(snapshot, 0)
    fields = _codec().fields[0x351]
    raw = {name: fields[name].raw(value) for name, value in _limits(i).items()}
    strings = _strings_online(snapshot)
    charge = max(CURRENT_FALL_A, CURRENT_FALL_PERCENT / 100.0 * bank.rated_charge_current * strings)
    discharge = max(CURRENT_FALL_A, CURRENT_FALL_PERCENT / 100.0 * bank.rated_discharge_current * strings)
    voltage = snapshot.voltage
    cvl = fields["ChargeVoltageLimit"].signal
    return _Watch(
        valid=snapshot.valid,
        charge_voltage=raw["ChargeVoltageLimit"],
        charge_current=raw["ChargeCurrentLimit"],
        discharge_current=raw["DischargeCurrentLimit"],
        discharge_voltage=raw["DischargeVoltageLimit"],
        voltage=None if voltage is None or not math.isfinite(voltage) else _to_raw(cvl, voltage, ROUND_HALF_UP),
        charge_step=fields["ChargeCurrentLimit"].raw(charge),
        discharge_step=fields["DischargeCurrentLimit"].raw(discharge),
        protections=frozenset(pair for pair, level in i.pairs if level is Level.PROTECTION),
        requests=snapshot.flags,
    )


class Schedule:
    """When the inverter gets the set: every period, and at once when a change protects the battery.

    Pure: the live publisher and replay both ask `due(now, snapshot)` and transmit what it returns, then call
    again by `wake()` at the latest. Changes are judged against the last set *sent*, so a fall that comes during
    the rate limit still goes out as soon as the limit allows, and small falls that add up go out once their sum
    is material. `bank` gives the rated currents: the bank's rating is the rated current of one string times
    the parallel strings online in the snapshot.
    """

    def __init__(self, config: InverterBusSection, *, bank: BankSection) -> None:
        self.profile = PROFILES[config.protocol]
        self.bank = bank
        """The rated currents the fast path's thresholds come from (replaced on a reload)."""
        self.period = self.profile.period or config.period
        self._slack = min(TICK_SLACK, self.period / 4)
        """How early a tick may come and still carry the period's set: sets ride on the master's ticks, and a tick
        a few ms early must not push the set to the next tick, a whole tick late."""
        self.fast_sends = 0
        self.reason: str | None = None
        """Why the last set sent was the fail-safe one; None while the inverter gets the master's limits."""
        self._next: float | None = None
        self._last_fast = -math.inf
        self._sent: _Watch | None = None
        self._wake = -math.inf

    def due(self, now: float, snapshot: BankSnapshot) -> list[tuple[int, bytes]]:
        """The frames to send now: the whole set when the period is up or a protective change waits, else none."""
        stale_at = snapshot.t + STALE_AFTER
        stale = now >= stale_at
        shown = _shown(snapshot.failsafe("master stale") if stale else snapshot)
        watch = _watch(shown, self.bank)
        urgent = self._sent is not None and watch.protects(self._sent)
        later = math.inf if stale else stale_at
        # The period counts on the master's clock (the snapshot's tick time) while it ticks: sets stay on the ticks
        # whenever the publisher first asks; once the snapshot is stale, on this clock.
        at = now if stale else snapshot.t
        if self._next is None or at >= self._next - self._slack:
            following = at if self._next is None else self._next + self.period
            self._next = following if following > at else at + self.period
        elif urgent and now >= self._last_fast + FAST_INTERVAL - _SLACK:
            self._last_fast = now
            self.fast_sends += 1
        else:
            fast = self._last_fast + FAST_INTERVAL if urgent else math.inf
            self._wake = min(self._next, fast) if stale else later
            return []
        self._sent = watch
        self.reason = None if shown.valid else shown.reason
        self._wake = self._next if stale else later
        return frames(shown, self.profile)

    def wake(self) -> float:
        """When `due` wants to be asked again if no newer snapshot comes first (clock time).

        While the master ticks, every new snapshot asks, so sets go out with the ticks (live exactly as in replay)
        and this is only when the snapshot would turn stale; once it is stale, the next period or fast send.
        """
        return self._wake


# -- the adapter: moves bytes -----------------------------------------------------------------------------------


class InverterPublisher:
    """Sends the schedule's frames on the inverter bus, from our own loop, until cancelled.

    A send error (a full transmit buffer when the inverter is unplugged) is counted and logged once per burst;
    the next set is tried all the same.
    """

    def __init__(self, bus: can.BusABC, hub: SnapshotHub, *, schedule: Schedule, clock: Clock) -> None:
        self._bus = bus
        self._hub = hub
        self._clock = clock
        self._schedule = schedule
        self._burst = BurstLog(log, "inverter frame not sent")
        self.stopped = False
        """The fail-safe set of a stop went out: nothing more is sent."""
        self.frames_sent = 0
        self.send_errors = 0

    @property
    def counters(self) -> dict[str, int]:
        return {"frames_sent": self.frames_sent, "send_errors": self.send_errors, "fast_sends": self.fast_sends}

    @property
    def fast_sends(self) -> int:
        return self._schedule.fast_sends

    async def run(self) -> None:
        """Send what the schedule says each time the master ticks (a new snapshot), so live sets go out exactly
        as replay's do, and on the schedule's own wake-up once the snapshot is stale."""
        reason: str | None = None
        while not self.stopped:
            snapshot = self._hub.latest
            self._send(self._schedule.due(self._clock(), snapshot))
            if self._schedule.reason != reason:
                reason = self._schedule.reason
                if reason is None:
                    log.info("inverter gets the master's limits again")
                else:
                    log.warning("inverter gets the fail-safe set", reason=reason)
            self._burst.flush()
            delay = max(0.0, self._schedule.wake() - self._clock())
            try:
                async with asyncio.timeout(delay):
                    await self._hub.newer(snapshot.seq)
            except TimeoutError:
                pass

    async def send_failsafe(self, times: int = 3) -> None:
        """Send the fail-safe set `times` times, FAST_INTERVAL apart (on shutdown): the inverter stops by
        itself and shows why, instead of waiting out the silence with the last limits. Nothing else is sent
        after it: `run` ends."""
        self.stopped = True
        data = frames(self._hub.latest.failsafe("gateway stopping"), self._schedule.profile)
        for n in range(times):
            if n:
                await asyncio.sleep(FAST_INTERVAL)
            self._send(data)

    def _send(self, data: list[tuple[int, bytes]]) -> None:
        for can_id, payload in data:
            try:
                self._bus.send(can.Message(arbitration_id=can_id, data=payload, is_extended_id=False), timeout=0.0)
            except can.CanError as err:
                self.send_errors += 1
                self._burst("send_error", error=str(err))
            else:
                self.frames_sent += 1


# -- what the inverter sends ------------------------------------------------------------------------------------


class InverterLink:
    """What the inverter sends back: 0x305 keep-alive (its arrival) and 0x307 identification (decoded with the DBC).

    Fed from python-can's receive thread; `info` is replaced whole, so the master reads a consistent value.
    Neither frame is required: `info` stays None for an inverter that never sends them, and the master raises
    `inverter_comm_lost` only after one was seen. "inverter seen" is logged for the first frame and for a new
    name, at most once per NAME_LOG_INTERVAL: a burst of changing names is one line, and the name it settles on
    is the next, with how often it changed in between.
    """

    def __init__(self) -> None:
        self._info: InverterInfo | None = None
        self._logged: str | None = None
        self._logged_at = -math.inf
        self._renames = 0

    @property
    def info(self) -> InverterInfo | None:
        return self._info

    def on_message(self, msg: can.Message, t: float) -> None:
        if msg.is_extended_id or msg.is_remote_frame or msg.is_error_frame:
            return
        self.feed(msg.arbitration_id, bytes(msg.data), t)

    def feed(self, can_id: int, data: bytes, t: float) -> None:
        """One frame received at `t`; IDs other than 0x305/0x307 are ignored. Short frames are zero-padded:
        their arrival is what counts."""
        if can_id not in INVERTER_IDS:
            return
        before = self._info
        name = "" if before is None else before.name
        keepalive_seen = None if before is None else before.keepalive_seen
        if can_id == KEEPALIVE:
            keepalive_seen = t
        else:
            message = _codec().messages[can_id]
            decoded = dbc.decode(message, data[: message.length].ljust(message.length, b"\0"))
            name = _text(int(decoded["InverterName"]), 4)
        self._info = InverterInfo(name=name, last_seen=t, keepalive_seen=keepalive_seen)
        if before is not None and before.name != name:
            self._renames += 1
        if name != self._logged and t >= self._logged_at + NAME_LOG_INTERVAL:
            renames = {"renames": self._renames} if self._renames > 1 else {}
            log.info("inverter seen", name=name or None, can_id=hex(can_id), **renames)
            self._logged, self._logged_at, self._renames = name, t, 0


def main(argv: list[str]) -> None:
    """Rewrite the generated part of the docs file given as the only argument."""
    generated.rewrite(Path(argv[0]), DOCS_COMMAND, alarm_markdown())
