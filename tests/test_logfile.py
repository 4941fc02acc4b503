"""Damaged and unreadable logs through `replay` and `decode`, as a user runs them: the exit code, stderr naming the
file and the line (the byte offset in a .blf), and every frame before the damage still used."""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import can
import pytest
from can.io.canutils import CanutilsLogReader
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.can import logfile
from gateway.can.logfile import CHUNK, MAX_LINE, LogFile
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


# -- the fast candump reader against python-can's --------------------------------------------------------------------

HEX = "0123456789abcdefABCDEF"
CANONICAL = st.builds(
    "({:.6f}) {} {}#{}{}\n".format,
    st.floats(0, 2e9, allow_nan=False),
    st.sampled_from(["vcan0", "can1", "modules", "0", "12"]),
    st.one_of(st.integers(0, 0x7FF).map("{:03X}".format), st.integers(0, 0x1FFFFFFF).map("{:08X}".format)),
    st.binary(max_size=8).map(bytes.hex).flatmap(lambda h: st.sampled_from([h, h.upper()])),
    st.sampled_from(["", " R", " T", " r", " t"]),
)
ODD = st.one_of(
    st.sampled_from(
        [
            "\n",
            "   \n",
            "(1.0) can0 123#R\n",  # remote frames
            "(1.0) can0 123#r5 R\n",
            "(1.0) can0 123##1A1B2C3D\n",  # CAN FD with flags
            "(1.0) can0 123##\n",
            "(1.0) can0 20000080#0000000000000000\n",  # an error frame
            "(1.0) can0 123#ABC\n",  # odd number of hex digits: python-can keeps the last nibble
            "(1.0) can0 123#+1\n",
            "(1.0) can0 0x12#00\n",
            "(1.0)\tcan0\t123#00\tR\n",
            "(1.0) can0 123#00\r\n",
            "1.0 can0 123#00\n",  # no parentheses: python-can cuts the first and last character anyway
            "(1e3) can0 1_23#00\n",
            "(nan) can0 123#00\n",
            "(1.0) ٣ 123#٣٣\n",  # unicode digits
            "(1.0) can0 123\n",
            "(1.0) can0 123#00 R extra\n",
            "(x) can0 123#00\n",
            "hello world\n",
        ]
    ),
    st.text(alphabet=st.sampled_from(f"{HEX}#() rRtT.\t-x0"), max_size=30).map(lambda t: t + "\n"),
)


def read_all(reader: Iterable[can.Message], lines: Any) -> list[object]:
    """Every message a reader yields as comparable tuples, then how it ended (the error and the line it names)."""
    out: list[object] = []
    try:
        for msg in reader:
            out.append(  # noqa: PERF401 - until the reader raises
                (
                    repr(msg.timestamp),
                    msg.arbitration_id,
                    msg.is_extended_id,
                    msg.is_remote_frame,
                    msg.is_error_frame,
                    type(msg.channel).__name__,
                    msg.channel,
                    msg.dlc,
                    bytes(msg.data),
                    msg.is_fd,
                    msg.is_rx,
                    msg.bitrate_switch,
                    msg.error_state_indicator,
                )
            )
    except Exception as err:
        out.append(("raised", type(err).__name__, str(err), lines.number))
    return out


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.one_of(CANONICAL, CANONICAL, CANONICAL, ODD), max_size=40), chunk=st.sampled_from([7, 64, CHUNK])
)
def test_the_candump_reader_yields_what_python_cans_reader_yields(lines: list[str], chunk: int) -> None:
    """On random candump logs (mostly what candump -L writes, some lines python-can reads its own odd way, some it
    refuses) the same messages, attribute for attribute, and the same error at the same line."""
    content = "".join(lines).encode()
    with patch.object(logfile, "CHUNK", chunk):
        ours = logfile._Lines(io.BytesIO(content))
        theirs = logfile._Lines(io.BytesIO(content))
        # python-can only iterates its file's lines; LogFile hands it a _Lines the same way
        reference = CanutilsLogReader(theirs)  # type: ignore[arg-type]
        assert read_all(logfile._CandumpReader(ours), ours) == read_all(reference, theirs)


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=300), chunk=st.sampled_from([1, 5, 64, CHUNK]), cut=st.booleans())
def test_lines_are_the_files_lines_however_it_is_read(content: bytes, chunk: int, cut: bool) -> None:
    """Read in blocks, the lines, their numbers and the error on a line that is not text are those of reading
    one line at a time."""
    content = content if cut else content + b"\n"
    *complete, last = content.split(b"\n")
    expected: list[object] = []
    try:
        for number, raw in enumerate(complete, start=1):
            expected.append((number, raw.decode() + "\n", False))
        if last:
            expected.append((len(complete) + 1, last.decode(), True))
    except UnicodeDecodeError as err:
        expected.append(("raised", str(err), len(expected) + 1))
    with patch.object(logfile, "CHUNK", chunk):
        lines = logfile._Lines(io.BytesIO(content))
        got: list[object] = []
        try:
            for line in lines:
                got.append((lines.number, line, lines.cut))  # noqa: PERF401 - until it raises
        except UnicodeDecodeError as err:
            got.append(("raised", str(err), lines.number))
    assert got == expected


def test_a_line_too_long_names_its_line_however_it_is_read() -> None:
    for chunk in (100, CHUNK):
        with patch.object(logfile, "CHUNK", chunk):
            content = b"ok\n" * 3 + b"1" * MAX_LINE + b"\nok\n"
            lines = logfile._Lines(io.BytesIO(content))
            with pytest.raises(ValueError, match="longer than"):
                list(lines)
            assert lines.number == 4
            lines = logfile._Lines(io.BytesIO(b"ok\n" + b"1" * (MAX_LINE - 1) + b"\nok\n"))
            assert [len(line) for line in lines] == [3, MAX_LINE, 3]


@pytest.mark.parametrize("name", ["frames.log", "frames.log.gz"])
def test_candump_logs_go_through_the_fast_reader(tmp_path: Path, name: str) -> None:
    text = "(1.000000) vcan0 401#A614C800F4015F02 R\n(1.100000) vcan0 12345678#00\n"
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    log = LogFile(path)
    messages = list(log)
    assert isinstance(log._open(), logfile._CandumpReader)
    assert [(m.arbitration_id, m.is_extended_id, bytes(m.data), m.is_rx) for m in messages] == [
        (0x401, False, bytes.fromhex("A614C800F4015F02"), True),
        (0x12345678, True, b"\0", True),
    ]
