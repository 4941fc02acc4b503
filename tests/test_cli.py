"""The command line as a user runs it: exit codes, messages, and the simulate -> decode -> replay round trip."""

from __future__ import annotations

import itertools
import json
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

from gateway.cli import main

from helpers.service import without_master_command


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "demo", "monitor", "status", "simulate", "replay", "decode", "check-config", "inverters"):
        assert command in out


def test_check_config_prints_the_effective_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[gateway]\nid = "garage"\n[bank]\nstrings = [[1], [2]]\n')
    assert main(["check-config", str(path)]) == 0
    effective = tomllib.loads(capsys.readouterr().out)
    assert effective["gateway"]["id"] == "garage"
    assert effective["bank"]["strings"] == [[1], [2]]
    assert effective["bank"]["module_timeout"] == 3.0
    assert effective["limits"]["charge_cell_voltage"][0] == [3.4, 100.0]


def test_bad_config_exits_2_with_one_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[bank]\nmax_modulez = 4\nmodule_timeout = -1\n[can.modules]\ndbc = 'missing.dbc'\n")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "bms-gateway: bank.max_modulez: unknown key (did you mean 'max_modules'?)",
        "bms-gateway: bank.module_timeout: must be within 1..60 s (the slowest required message comes every 1 s), "
        "got -1",
    ]
    path.write_text("[can.modules]\ndbc = 'missing.dbc'\n")
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err.startswith("bms-gateway: can.modules.dbc: no such file")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[bank]\ntick = 1e-9\n", "bank.tick: must be within 0.01..1 s, got 1e-09"),
        ("[bank]\ntick = 1e12\n", "bank.tick: must be within 0.01..1 s, got 1e+12"),
        ("[bank]\nadmission_soc_window = -3\n", "bank.admission_soc_window: must be within 0.5..100 %, got -3"),
        ("[limits]\nforce_charge_soc = 200\n", "limits.force_charge_soc: must be within 0..100 %, got 200"),
        ("[can.modules]\naddress_mask = 0x400\n", "can.modules.address_mask: must be a low-bit mask"),
        ('[gateway]\nid = "stack\\u00001"\n', "gateway.id: must not contain control characters, got '\\x00'"),
        ('[gateway]\nid = "stack\\u001b1"\n', "gateway.id: must not contain control characters, got '\\x1b'"),
    ],
)
def test_check_config_refuses_values_that_make_no_physical_sense(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"bms-gateway: {expected}")


def test_a_config_nested_too_deeply_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[bank]\nstrings = " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err == f"bms-gateway: {path}: not valid TOML: arrays or tables nested too deeply\n"


def test_a_password_file_that_is_not_text_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mqtt.pass").write_bytes(b"\xff\xfe s3cret\n")
    path = tmp_path / "gateway.toml"
    path.write_text("[mqtt]\nusername = 'bms'\npassword_file = 'mqtt.pass'\n")
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"bms-gateway: mqtt.password_file: {tmp_path / 'mqtt.pass'} is not UTF-8 text (byte 0: invalid start byte)\n"
    )


def test_a_mask_that_merges_the_dbc_messages_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[can.modules]\naddress_mask = 0x3F\n")
    for command in (["check-config", str(path)], ["run", "--config", str(path)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith("bms-gateway: can.modules.address_mask: 0x3f gives ModuleStatus (0x400) and ModuleLimits")
        assert "frame 0x421" in err
    path.write_text("[can.modules]\naddress_mask = 0x1F\n")
    assert main(["check-config", str(path)]) == 0


def test_bad_fault_spec_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--output", str(tmp_path / "x.log"), "--fault", "explode:1"]) == 2
    assert "explode" in capsys.readouterr().err


def test_simulate_then_decode_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "x.log"
    assert main(["simulate", "--modules", "16", "--duration", "60", "--output", str(log)]) == 0
    written = int(capsys.readouterr().out.split()[1])
    assert main(["decode", str(log), "--json"]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert len(records) == written > 16 * 60 * 20
    assert captured.err == ""  # every frame decoded
    times: dict[tuple[int, str], list[float]] = defaultdict(list)
    counters: dict[int, list[int]] = defaultdict(list)
    for r in records:
        times[(r["address"], r["message"])].append(r["t"])
        if r["message"] == "ModuleStatus":
            counters[r["address"]].append(r["signals"]["AliveCounter"])
    assert {a for a, _ in times} == set(range(1, 17))
    expected = {
        "ModuleStatus": 0.1,
        "CellSummary": 0.2,
        "ModuleLimits": 1.0,
        "Temperatures": 1.0,
        "Alarms": 1.0,
        "ModuleCapacity": 1.0,
        "ModuleInfo": 10.0,
    }
    for (address, message), stamps in times.items():
        if message in expected:
            gaps = [b - a for a, b in itertools.pairwise(stamps)]
            assert all(abs(g - expected[message]) < 1e-6 for g in gaps), (address, message)
    for address, values in counters.items():
        assert all((b - a) % 16 == 1 for a, b in itertools.pairwise(values)), address


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        # A polled tower: its answers, module 2 at ID nibble 1; 0x4280 says "allowed" (0).
        ("pylon-hv-battery", {(2, "EnsembleStatus"), (2, "Forbidden"), (1, "Limits")}),
        # Polled per address, the address in the ID's low byte.
        ("daly-can", {(1, "PackStatus"), (2, "CellVoltageExtremes")}),
    ],
)
def test_decode_with_a_profile_names_its_messages_and_modules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], profile: str, expected: set[tuple[int, str]]
) -> None:
    log = tmp_path / "x.log"
    assert main(["simulate", "--modules", "2", "--duration", "3", "--profile", profile, "--output", str(log)]) == 0
    written = int(capsys.readouterr().out.split()[1])
    assert main(["decode", str(log), "--profile", profile, "--json"]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert len(records) == written
    assert captured.err == ""  # every frame decoded
    assert expected <= {(r["address"], r["message"]) for r in records}
    if profile == "pylon-hv-battery":
        forbidden = next(r for r in records if r["message"] == "Forbidden")
        assert forbidden["signals"] == {"ChargeForbidden": 0, "DischargeForbidden": 0}
    # The same log read as our protocol: none of its IDs is ours.
    assert main(["decode", str(log)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{written} frames with IDs the DBC does not know" in captured.err


def test_decode_with_a_config_reads_each_channel_with_its_bus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One Pylontech LV battery per bus: the IDs carry no address, the channel says which battery it is."""
    log = tmp_path / "x.log"
    args = ["simulate", "--modules", "2", "--duration", "2", "--profile", "pylon-lv-battery", "--output", str(log)]
    assert main([*args, "--channel", "bat"]) == 0
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "[[can.modules]]\nchannel = 'bat-1'\nprofile = 'pylon-lv-battery'\naddress = 1\n"
        "[[can.modules]]\nchannel = 'bat-2'\nprofile = 'pylon-lv-battery'\naddress = 2\n"
    )
    capsys.readouterr()
    assert main(["decode", str(log), "--config", str(cfg), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(r["address"], r["message"]) for r in records} >= {(1, "BatteryLimits"), (2, "BatteryLimits")}
    assert main(["decode", str(log), "--config", str(cfg), "--dbc", "x.dbc"]) == 2
    assert "--dbc: the config names each bus's DBC" in capsys.readouterr().err


def test_decode_names_the_module_a_payload_signal_gives(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`signal` addressing: the ID is the same for every module, the payload's Battery signal (+ offset) names it."""
    (tmp_path / "signal.dbc").write_text(
        'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: BMS\n\n'
        "BO_ 1536 Pack: 8 BMS\n"
        ' SG_ PackV : 0|16@1+ (0.1,0) [0|1000] "V" Vector__XXX\n'
        ' SG_ StateOfCharge : 16|8@1+ (1,0) [0|100] "%" Vector__XXX\n'
        ' SG_ Battery : 56|8@1+ (1,0) [0|15] "" Vector__XXX\n'
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "[can.modules]\ndbc = 'signal.dbc'\naddress_signal = 'Battery'\naddress_offset = 1\ncommands = false\n"
        "signal_map = { PackV = 'ModuleVoltage', StateOfCharge = 'SOC' }\n"
    )
    log = tmp_path / "x.log"
    log.write_text("(1.000000) can0 600#1002370000000004\n(1.100000) can0 600#200238000000000F\n")
    assert main(["decode", str(log), "--config", str(cfg), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["address"], r["message"], r["signals"]["StateOfCharge"]) for r in records] == [
        (5, "Pack", 55),
        (16, "Pack", 56),
    ]


def test_decode_of_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(tmp_path / "none.log")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_replay_writes_snapshots_and_sent_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "x.asc"
    assert main(["simulate", "--modules", "4", "--duration", "20", "--output", str(log), "--current", "30"]) == 0
    cfg = tmp_path / "c.toml"
    cfg.write_text("[can.inverter]\nprotocol = 'victron'\n")
    out = tmp_path / "out.log"
    snapshots = tmp_path / "s.jsonl"
    capsys.readouterr()
    assert main(["replay", str(log), "--config", str(cfg), "--snapshots", str(snapshots), "--output", str(out)]) == 0
    assert "rejected: none" in capsys.readouterr().out
    lines = [json.loads(line) for line in snapshots.read_text().splitlines()]
    assert len(lines) == pytest.approx(200, abs=3)
    assert not lines[0]["valid"]
    assert lines[-1]["valid"]
    assert lines[-1]["modules_online"] == [1, 2, 3, 4]
    assert lines[-1]["limits"]["charge_current"]["value"] > 0
    sent = out.read_text()
    assert "inverter 351#" in sent and "inverter 372#" in sent  # the victron profile
    assert "modules 381#" in sent


def test_replay_with_a_dbc_without_master_command_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "nocommand.dbc").write_text(without_master_command(Path(__file__).parents[1] / "dbc" / "module.dbc"))
    cfg = tmp_path / "c.toml"
    cfg.write_text("[can.modules]\ndbc = 'nocommand.dbc'\n")
    log = tmp_path / "x.log"
    assert main(["simulate", "--modules", "1", "--duration", "1", "--output", str(log)]) == 0
    assert main(["replay", str(log), "--config", str(cfg)]) == 2
    assert "can.modules.dbc: the DBC has no MasterCommand message" in capsys.readouterr().err
    cfg.write_text("[can.modules]\ndbc = 'nocommand.dbc'\ncommands = false\n")
    assert main(["replay", str(log), "--config", str(cfg)]) == 0


def test_inverters_lists_every_profile_and_prints_one_frame_table(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.outputs.inverter import ALIASES, PROFILES  # noqa: PLC0415

    assert main(["inverters"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == [*PROFILES, *ALIASES]
    assert main(["inverters", "pylon-hv"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("pylon-hv: request/response, 29-bit IDs, 500 kbit/s, dbc/inverters/pylon_hv.dbc")
    assert "0x4220 Limits, DLC 8" in table
    assert "ChargeCurrentLimit: bit 32, u16 LE ×0.1 -3000 A" in table
    assert "never sends anything unasked" in table
    assert main(["inverters", "sma"]) == 0
    assert capsys.readouterr().out.startswith("sma-lv: broadcast")
    assert main(["inverters", "growatt"]) == 2
    assert "no inverter profile 'growatt'" in capsys.readouterr().err


def test_demo_with_a_simulated_inverter_refuses_an_unknown_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--inverter", "nope", "--duration", "0.1"]) == 2
    assert "--inverter: no profile 'nope'" in capsys.readouterr().err


def test_check_config_refuses_an_option_the_profile_does_not_honour(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[can.inverter]\nprotocol = "victron"\nbyte_order = "big"\n')
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err == "bms-gateway: can.inverter.byte_order: applies to pylon-hv only, not to victron\n"
    path.write_text(
        '[can.inverter]\nprotocol = "pylon-hv"\nbyte_order = "big"\ncurrent_offset = false\nid_suffix = 1\n'
    )
    assert main(["check-config", str(path)]) == 0
    inverter = tomllib.loads(capsys.readouterr().out)["can"]["inverter"]
    assert (inverter["byte_order"], inverter["current_offset"], inverter["id_suffix"]) == ("big", False, 1)
