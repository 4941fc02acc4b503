"""SunSpec at 40000, read by pysunspec2's own client: models found, values equal to the snapshot, layout fixed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import sunspec2
import sunspec2.modbus.client as sunspec_client

from gateway import __version__, config
from gateway.config import Config
from gateway.hub import SnapshotHub
from gateway.master.model import Alarm, AlarmCode, BankSnapshot, Level, empty_snapshot
from gateway.outputs import sunspec
from gateway.outputs.alarm_table import MODBUS_BIT
from gateway.outputs.modbus import ModbusServer
from gateway.outputs.sunspec_models import MODELS, Group, ModelDef, Point

from helpers.factories import master, reading, run
from helpers.modbus import serving as modbus_serving

CELLS = tuple(round(3.290 + 0.002 * i, 3) for i in range(16))
STRINGS = {"strings": [[1, 2], [3, 4]], "max_modules": 4}


def cells(address: int) -> dict[str, Any]:
    return {
        "cell_voltages": CELLS,
        "cell_voltage_max": CELLS[-1],
        "cell_voltage_max_index": 16,
        "cell_voltage_min": CELLS[0] - 0.001 * address,
        "cell_voltage_min_index": 1,
        "cell_balancing": (False,) * 15 + (True,),
    }


def towers(t: float) -> dict[int, Any]:
    """Two parallel strings of two modules in series; module 3 sees the bank's lowest cell."""
    return {a: reading(a, t, current=20.0 + a, temperature_max=25.0 + a, **cells(a)) for a in (1, 2, 3, 4)}


def serving(snapshot: BankSnapshot, cfg: Config) -> AbstractAsyncContextManager[ModbusServer]:
    return modbus_serving(SnapshotHub(snapshot), lambda: snapshot.t, cfg)


def scan(port: int) -> dict[Any, list[Any]]:
    """What a standard SunSpec client finds (synchronous: run it in a thread)."""
    device = sunspec_client.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=2)
    try:
        device.scan()
        return {k: v for k, v in device.models.items() if isinstance(k, int)}
    finally:
        device.close()


def config_for(**bank: Any) -> Config:
    return config.parse({"modbus": {"port": 0}, "bank": bank, "gateway": {"id": "garage-1", "name": "Garage"}})


async def test_a_sunspec_client_finds_every_model_and_reads_the_snapshot() -> None:
    cfg = config_for(**STRINGS)
    s = run(master(bank=STRINGS), 0.0, 6.0, towers).snapshot
    assert s.valid
    async with serving(s, cfg) as server:
        models = await asyncio.to_thread(scan, server.port)

    assert {k: len(v) for k, v in models.items()} == {1: 1, 802: 1, 803: 1, 804: 2, 805: 4}
    common = models[1][0]
    assert (common.Mn.cvalue, common.Md.cvalue, common.SN.cvalue) == ("bms-gateway", "Garage", "garage-1")
    assert (common.Vr.cvalue, common.DA.cvalue) == (__version__, 1)

    battery = models[802][0]
    assert battery.SoC.cvalue == pytest.approx(s.soc, abs=0.05)
    assert battery.V.cvalue == pytest.approx(s.voltage, abs=0.005)
    assert battery.A.cvalue == pytest.approx(s.current, abs=0.05)
    assert battery.W.cvalue == pytest.approx(s.power, abs=10)
    assert s.cell_voltage_max is not None and s.cell_voltage_min is not None
    assert battery.CellVMax.cvalue == pytest.approx(s.cell_voltage_max.value)
    assert battery.CellVMin.cvalue == pytest.approx(s.cell_voltage_min.value)
    assert (battery.CellVMinStr.cvalue, battery.CellVMinMod.cvalue) == (2, 2)  # module 4: string 2, second
    assert battery.AChaMax.cvalue == pytest.approx(s.limits.charge_current.value, abs=0.05)
    assert battery.ADisChaMax.cvalue == pytest.approx(s.limits.discharge_current.value, abs=0.05)
    assert battery.VMax.cvalue == pytest.approx(s.limits.charge_voltage.value)
    assert battery.VMin.cvalue == pytest.approx(s.limits.discharge_voltage.value)
    assert (battery.State.cvalue, battery.Typ.cvalue, battery.Evt1.cvalue) == (3, 4, 0)
    assert battery.DoD.cvalue is None  # not implemented

    bank = models[803][0]
    assert (bank.NStr.cvalue, bank.NStrCon.cvalue) == (2, 2)
    assert [g.StrNMod.cvalue for g in bank.string] == [2, 2]
    assert [g.StrA.cvalue for g in bank.string] == pytest.approx([21.5, 23.5])  # series: mean of the two

    for index, string in enumerate(models[804], 1):
        assert (string.Idx.cvalue, string.NMod.cvalue, string.St.cvalue) == (index, 2, 1)
        assert string.V.cvalue == pytest.approx(106.0)
        assert len(string.lithium_ion_string_module) == 2
    assert [m.ModCellVMin.cvalue for m in models[804][1].lithium_ion_string_module] == pytest.approx([3.287, 3.286])

    for (string, position), module in zip(((1, 1), (1, 2), (2, 1), (2, 2)), models[805], strict=True):
        assert (module.StrIdx.cvalue, module.ModIdx.cvalue, module.NCell.cvalue) == (string, position, 16)
        groups = module.groups["lithium-ion-module-cell"]
        assert [g.CellV.cvalue for g in groups] == pytest.approx(list(CELLS))
        assert [g.CellSt.cvalue for g in groups] == [0] * 15 + [1]
        assert groups[0].CellTmp.cvalue is None


async def test_layout_is_fixed_by_the_config_not_by_who_is_present() -> None:
    cfg = config_for(max_modules=6)
    lay = sunspec.layout(cfg)
    s = run(master(bank={"max_modules": 6}), 0.0, 6.0, lambda t: {a: reading(a, t) for a in (3, 9)}).snapshot
    assert len(sunspec.image(lay, s)) == len(sunspec.image(lay, empty_snapshot(0.0))) == lay.size
    async with serving(s, cfg) as server:
        models = await asyncio.to_thread(scan, server.port)
    assert {k: len(v) for k, v in models.items()} == {1: 1, 802: 1, 803: 1, 804: 6, 805: 6}
    # Auto mode: slots follow the present modules in address order; the rest read "not implemented".
    assert [m.V.cvalue for m in models[805]] == [53.0, 53.0, None, None, None, None]
    assert [m.St.cvalue for m in models[804]] == [1, 1, 0, 0, 0, 0]
    assert models[803][0].NStrCon.cvalue == 2


def test_scale_factors_keep_precision_and_fit_a_high_voltage_tower() -> None:
    small = sunspec.layout(config_for())
    assert (small.scale[802]["V_SF"], small.scale[802]["A_SF"], small.scale[805]["CellV_SF"]) == (-2, -1, -3)
    tower = sunspec.layout(config_for(strings=[list(range(1, 31))], max_modules=30))
    assert tower.scale[802]["V_SF"] == -1  # 30 x 16 x 4.0 V does not fit 0.01 V in 16 bits
    s = run(master(bank={"strings": [list(range(1, 31))], "max_modules": 30}), 0.0, 6.0, _tower).snapshot
    assert s.valid
    registers = sunspec.image(tower, s)
    battery = tower.blocks[1]
    v_offset = _offset(MODELS[802], "V")
    assert s.voltage is not None
    assert registers[battery.address - sunspec.BASE + v_offset] == round(s.voltage * 10)


def _tower(t: float) -> dict[int, Any]:
    return {a: reading(a, t) for a in range(1, 31)}


def _offset(model: ModelDef, name: str) -> int:
    offset = 0
    for p in model.points:
        if p.name == name:
            return offset
        offset += p.size
    raise KeyError(name)


def test_unimplemented_points_read_sunspec_not_implemented_values() -> None:
    lay = sunspec.layout(config_for())
    registers = sunspec.image(lay, empty_snapshot(0.0))
    assert registers[:2] == (0x5375, 0x6E53)  # "SunS"
    assert registers[-2:] == (0xFFFF, 0)
    battery = lay.blocks[1].address - sunspec.BASE
    at = {name: registers[battery + _offset(MODELS[802], name)] for name in ("SoC", "A", "DoD", "DoD_SF", "State")}
    assert at == {"SoC": 0xFFFF, "A": 0x8000, "DoD": 0xFFFF, "DoD_SF": 0x8000, "State": 2}
    module = lay.blocks[-1].address - sunspec.BASE
    assert registers[module + _offset(MODELS[805], "SN")] == 0
    assert registers[module + _offset(MODELS[805], "V")] == 0xFFFF


@pytest.mark.parametrize("code", list(AlarmCode))
def test_every_alarm_code_sets_an_event_bit(code: AlarmCode) -> None:
    lay = sunspec.layout(config_for(**STRINGS))
    s = run(master(bank=STRINGS), 0.0, 6.0, towers).snapshot
    registers = sunspec.image(lay, dataclasses.replace(s, alarms=(Alarm(code, Level.WARNING, (3,), 0.0),)))
    battery = lay.blocks[1].address - sunspec.BASE
    evt1 = _offset(MODELS[802], "Evt1")
    vendor = _offset(MODELS[802], "EvtVnd1")
    assert registers[battery + evt1] << 16 | registers[battery + evt1 + 1] != 0
    assert registers[battery + vendor] << 16 | registers[battery + vendor + 1] == 1 << MODBUS_BIT[code]
    first, second = (b.address - sunspec.BASE + _offset(MODELS[804], "Evt1") for b in lay.blocks if b.model == 804)
    assert registers[first] << 16 | registers[first + 1] == 0  # module 3 is in the second string
    string_events = registers[second] << 16 | registers[second + 1]
    assert string_events != 0
    assert not string_events & 1 << 24  # reserved in 803/804 (802's current imbalance warning)


async def test_invalid_bank_reads_zero_current_limits_and_not_connected() -> None:
    cfg = config_for(**STRINGS)
    s = master(bank=STRINGS).step(0.0, towers(0.0)).snapshot
    assert not s.valid
    async with serving(s, cfg) as server:
        models = await asyncio.to_thread(scan, server.port)
    battery = models[802][0]
    assert (battery.AChaMax.cvalue, battery.ADisChaMax.cvalue, battery.State.cvalue) == (0, 0, 1)
    assert battery.SetOp.cvalue == 2  # DISCONNECT


def test_vendored_models_match_pysunspec2() -> None:
    """gateway/outputs/sunspec_models.py is the official point lists; pysunspec2 ships them as JSON."""
    root = Path(sunspec2.__file__).parent / "models" / "json"

    def points(group: dict[str, Any]) -> tuple[Point, ...]:
        return tuple(Point(p["name"], p["type"], p["size"], p.get("sf")) for p in group["points"])

    for model_id, vendored in MODELS.items():
        g = json.loads((root / f"model_{model_id}.json").read_text(encoding="utf-8"))["group"]
        groups = [Group(x["name"], x["count"], points(x)) for x in g.get("groups", [])]
        assert vendored == ModelDef(model_id, g["name"], points(g), groups[0] if groups else None)
