"""Damaged and unreadable logs through `replay` and `decode`, as a user runs them: the exit code, stderr naming the
file and the line (the byte offset in a .blf), and every frame before the damage still used."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.cli import main

from helpers.clocks import unix

GARBAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
COMMANDS = ("replay", "decode")
DONE = {"replay": "replayed", "decode": "decoded"}


def run(command: str, log: Path, tmp_path: Path) -> int:
    if command == "decode":
        return main(["decode", str(log), "--json"])
    config = tmp_path / "gateway.toml"
    config.write_text("")
    return main(["replay", str(log), "--config", str(config), "--snapshots", str(tmp_path / "snapshots.jsonl")])


def simulated(path: Path, capsys: pytest.CaptureFixture[str]) -> int:
    """A valid log of one module for 2 s at `path` (format by suffix); the number of frames in it."""
    assert main(["simulate", "--modules", "1", "--duration", "2", "--output", str(path)]) == 0
    return int(capsys.readouterr().out.split()[1])


def used(command: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(frames decoded or replayed, stderr) of the command that just ran."""
    out, err = capsys.readouterr()
    if command == "decode":
        return len(out.splitlines()), err
    match = re.match(r"(\d+) frames", out)
    assert match, out
    return int(match[1]), err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.log", b"", "the file is empty"),
        ("empty.asc", b"", "the file is empty"),
        ("empty.blf", b"", "the file is empty"),
        ("garbage.log", GARBAGE, "line 1: not text (byte 0x89 is not UTF-8)"),
        ("garbage.asc", GARBAGE, "line 1: not text (byte 0x89 is not UTF-8)"),
        ("garbage.blf", GARBAGE, "byte 72: not valid .blf data (Unexpected file format)"),
        ("words.log", b"hello world\n", "line 1: not a valid .log line (not enough values to unpack"),
        ("words.asc", b"hello\nworld\n", "no CAN frames in it"),
        ("long.log", b"(0.0) " + b"1" * 100_000, "line 1: not a valid .log line (longer than 65536 bytes)"),
        ("inf.log", b"(inf) modules 401#A614C800F4015F02\n", "line 1: timestamp inf is not finite"),
        ("log.txt", b"(0.0) modules 401#A614C800F4015F02\n", "unknown log format '.txt'"),
    ],
)
def test_a_log_with_nothing_readable_exits_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, name: str, content: bytes, expected: str
) -> None:
    log = tmp_path / name
    log.write_bytes(content)
    assert run(command, log, tmp_path) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"bms-gateway: {log}: {expected}"), err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        (
            5,
            "not a valid .log line (not enough values to unpack (expected 3, got 1)); "
            "the file ends in the middle of it",
        ),
        (-8, "the file ends in the middle of this line"),  # it parses, as a frame with data bytes missing
    ],
)
def test_a_candump_log_cut_mid_line_is_used_up_to_the_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, keep: int, expected: str
) -> None:
    log = tmp_path / "cut.log"
    frames = simulated(log, capsys)
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]) + lines[-1][:keep])  # the recorder was unplugged
    assert run(command, log, tmp_path) == 0
    count, err = used(command, capsys)
    assert count == frames - 1
    assert err == (
        f"bms-gateway: {log}: line {frames}: {expected}; {DONE[command]} the {frames - 1} frames before it, "
        "not the rest of the file\n"
    )


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("bad", ["inf", "-inf", "nan"])
def test_a_timestamp_that_is_not_finite_stops_the_log_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, bad: str
) -> None:
    log = tmp_path / "clock.log"
    simulated(log, capsys)
    lines = log.read_text().splitlines(keepends=True)
    lines[9] = re.sub(r"^\([^)]*\)", f"({bad})", lines[9])
    log.write_text("".join(lines))
    assert run(command, log, tmp_path) == 0
    count, err = used(command, capsys)
    assert count == 9
    assert err.startswith(f"bms-gateway: {log}: line 10: timestamp {bad} is not finite; ")
    if command == "replay":
        last = float(lines[8][1:].split(")")[0])
        snapshots = (tmp_path / "snapshots.jsonl").read_text().splitlines()
        ticks = [unix(json.loads(line)["t"]) for line in snapshots]  # the log's time, as ISO 8601
        assert ticks and max(ticks) <= last  # the master's clock never saw the bad timestamp


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("suffix", [".asc", ".log"])
def test_binary_bytes_after_valid_lines_name_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, suffix: str
) -> None:
    log = tmp_path / f"tail{suffix}"
    frames = simulated(log, capsys)
    line = len(log.read_bytes().splitlines()) + 1
    with log.open("ab") as f:
        f.write(GARBAGE)
    assert run(command, log, tmp_path) == 0
    count, err = used(command, capsys)
    assert count == frames
    assert err.startswith(f"bms-gateway: {log}: line {line}: not text (byte 0x89 is not UTF-8); ")


@pytest.mark.parametrize("command", COMMANDS)
def test_garbage_after_valid_blf_objects_names_the_byte_offset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    log = tmp_path / "tail.blf"
    frames = simulated(log, capsys)
    size = log.stat().st_size
    with log.open("ab") as f:
        f.write(GARBAGE)
    assert run(command, log, tmp_path) == 0
    count, err = used(command, capsys)
    assert count == frames
    match = re.match(rf"bms-gateway: {re.escape(str(log))}: byte (\d+): not valid \.blf data \(BLFParseError\); ", err)
    assert match, err
    assert size <= int(match[1]) <= size + 16  # the object header that is not one
