"""A snapshot as a profile's frames: `frames(snapshot, profile, options, parts)` -> (ID, payload, extended). Pure.

The same for every profile: the snapshot shown is the fail-safe one when it is not valid (whoever built it), the
alarms become the DBC signals of the profile's alarm column (an invalid snapshot raises `internal_error` at
protection level, so the inverter shows why it was stopped), and each part is encoded with the profile's DBC (or
the variant its options ask for) from the values its builder gives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import NamedTuple

from gateway.master.model import AlarmCode, BankSnapshot, Level, Lifecycle
from gateway.outputs.alarm_table import COLUMNS, NotSent
from gateway.outputs.inverter.codec import Codec, codec
from gateway.outputs.inverter.profiles import Input, Options, Part, Profile


class Frame(NamedTuple):
    """One frame to send: its ID on the wire, its payload, and whether the ID is 29-bit."""

    can_id: int
    data: bytes
    extended: bool = False


def shown(snapshot: BankSnapshot) -> BankSnapshot:
    """An invalid snapshot always goes out as the fail-safe set, whoever built it (the master already does)."""
    return snapshot if snapshot.valid else snapshot.failsafe(snapshot.reason)


def active(snapshot: BankSnapshot, profile: Profile, level: Level | None = None) -> frozenset[str]:
    """The alarm signals of `profile`'s column that `snapshot` sets (at `level`, or at either)."""
    column = COLUMNS[profile.alarm_column]
    alarms: list[tuple[AlarmCode, Level]] = [(a.code, a.level) for a in snapshot.alarms]
    if not snapshot.valid:
        alarms.append((AlarmCode.INTERNAL_ERROR, Level.PROTECTION))
    names: set[str] = set()
    for code, at in alarms:
        mapped = column[code]
        if isinstance(mapped, NotSent) or (level is not None and at is not level):
            continue
        names.update(mapped.signals(at))  # type: ignore[attr-defined]
    return frozenset(names)


def soc_shown(snapshot: BankSnapshot, options: Options) -> BankSnapshot:
    """Deye's workaround (`deye_soc_workaround`): SOC 100 % while charging is forbidden, 0 % while discharging is
    (both forbidden: 0 %, as the public implementation does), because Deye ignores a zero current limit."""
    if not options.deye_soc_workaround:
        return snapshot
    flags, limits = snapshot.flags, snapshot.limits
    soc = snapshot.soc
    if not flags.charge_enable or limits.charge_current.value <= 0:
        soc = 100.0
    if not flags.discharge_enable or limits.discharge_current.value <= 0:
        soc = 0.0
    return dataclasses.replace(snapshot, soc=soc)


def codec_of(profile: Profile, options: Options) -> Codec:
    """The profile's DBC, in the layout its options ask for."""
    drop_offset = profile.defaults.current_offset and not options.current_offset
    return codec(
        profile.dbc,
        big_endian=options.byte_order == "big" and profile.defaults.byte_order == "little",
        no_offset=profile.offset_signals if drop_offset else frozenset(),
    )


def modules_online(snapshot: BankSnapshot) -> int:
    return len(snapshot.addresses(Lifecycle.ONLINE))


def frames(
    snapshot: BankSnapshot,
    profile: Profile,
    options: Options | None = None,
    parts: Iterable[Part] | None = None,
    *,
    cells_in_series: int = 16,
    session: str | None = None,
    request: bytes = b"",
    modules_count: int | None = None,
) -> list[Frame]:
    """The frames of `parts` (default: every part of the profile's groups, in order) for this snapshot.

    `modules_count` (Pylon's 0x359 byte 4) defaults to the modules online; some inverters derive capacity from it.
    """
    options = profile.defaults if options is None else options
    if parts is None:
        parts = [p for group in profile.groups for p in group.parts]
    snap = soc_shown(shown(snapshot), options)
    base = Input(
        snapshot=snap,
        active=active(snap, profile),
        options=options,
        cells_in_series=cells_in_series,
        session=profile.initial if session is None else session,
        request=request,
        modules_count=modules_online(snap) if modules_count is None else modules_count,
    )
    encoder = codec_of(profile, options)
    out = []
    for frame_id, part in parts:
        i = base if part == 0 else dataclasses.replace(base, part=part)
        data = encoder.encode(frame_id, profile.builders[frame_id](i))
        out.append(Frame(frame_id + options.id_offset, data, profile.extended))
    return out
