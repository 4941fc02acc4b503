"""Recorded CAN logs (format by suffix: `.log` candump, `.asc`, `.blf`, ... optionally `.gz`) for replay and decode.

python-can's readers stop with whatever their parser raises on a damaged file (ValueError, IndexError,
struct.error, UnicodeDecodeError, ...), mid-iteration and without saying where. The logs installers send are
often cut short (unplugged mid-write) or not logs at all, so `LogFile` yields the frames up to the first damage
and records the damage as a `LogError` naming the file and the line (the byte offset in a binary format); a file
with no frame in it raises that error instead. A timestamp that is not finite is damage too (replay's clock
must never see one), and so is a last line without its end of line, even when it parses: cut in its data, it
would be a shorter frame than the one recorded.

Text logs are read in large blocks (`_Lines`), and candump logs, what gateway boxes record, are parsed by
`_CandumpReader`: python-can's parser with a faster path for plain data frames, the same messages and errors.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from collections.abc import Iterator
from io import BufferedIOBase
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import can
from can.io import MESSAGE_READERS
from can.io.canutils import CanutilsLogReader
from can.io.generic import BinaryIOMessageReader, TextIOMessageReader

from gateway.errors import LogError

MAX_LINE = 1 << 16
"""Bytes; a longer line is not a CAN log line (and reading it whole could take all the memory)."""
CHUNK = 1 << 20
"""Bytes read from a text log at once."""


class _Lines:
    """The lines of a text log, decoded and counted, as python-can's text readers iterate their file.

    The file is read in blocks of CHUNK bytes and a block's lines are decoded at once; a block that holds a line
    that is not UTF-8 or too long goes line by line, so the error names its line. `number` is the line last
    handed out (or being read when reading fails). One iterator however often it is iterated: a reader that loops
    twice (python-can's ASC reader: the header, then the frames) resumes where it stopped.
    """

    def __init__(self, raw: BufferedIOBase) -> None:
        self._raw = raw
        self.number = 0
        self.cut = False
        """The last line read has no end of line: the file ends in the middle of it."""
        self._lines = self._read()

    def __iter__(self) -> Iterator[str]:
        return self._lines

    def __next__(self) -> str:
        return next(self._lines)

    def close(self) -> None:
        self._raw.close()

    def _read(self) -> Iterator[str]:
        rest = b""
        while True:
            try:
                chunk = self._raw.read(CHUNK)
            except Exception:
                self.number += 1  # a read that fails names the line it was reading
                raise
            if not chunk:
                break
            data = rest + chunk
            end = data.rfind(b"\n") + 1
            rest = data[end:]
            if end:
                try:
                    lines = data[:end].decode().split("\n")
                except UnicodeDecodeError:
                    lines = None
                if lines is None or 4 * max(map(len, lines)) >= MAX_LINE:  # a UTF-8 character has 4 bytes at most
                    yield from self._one_by_one(data[:end])
                else:
                    lines.pop()  # what follows the block's last end of line: nothing
                    for line in lines:
                        self.number += 1
                        yield line + "\n"
            if len(rest) > MAX_LINE:
                self.number += 1
                raise ValueError(f"longer than {MAX_LINE} bytes")
        if rest:
            self.number += 1
            line = rest.decode()
            self.cut = True
            yield line

    def _one_by_one(self, block: bytes) -> Iterator[str]:
        lines = block.split(b"\n")
        lines.pop()
        for line in lines:
            self.number += 1
            if len(line) + 1 > MAX_LINE:
                raise ValueError(f"longer than {MAX_LINE} bytes")
            yield line.decode() + "\n"


class _Reader(Protocol):
    """What LogFile reads from: python-can's reader for the format, or ours for candump logs."""

    def __iter__(self) -> Iterator[can.Message]: ...

    def stop(self) -> None: ...


class _CandumpReader:
    """What `can.CanutilsLogReader` yields for a candump log, about three times as fast.

    python-can's parser, line for line, with one shortcut: a data frame's payload is read with
    `bytearray.fromhex` rather than two hex digits at a time. A line the shortcut does not take as it is goes to
    python-can's reader itself: an error frame, and whatever raises here (the data of a CAN FD frame, `##<flags>`,
    or of a remote frame, `R`, is not hex; nor is an odd number of digits, which python-can reads its own way).
    So the messages, and the error a damaged line raises, are python-can's (tests/test_logfile.py compares both
    on random logs).
    """

    def __init__(self, lines: _Lines) -> None:
        self._lines = lines

    def __iter__(self) -> Iterator[can.Message]:
        message = can.Message
        for line in self._lines:
            temp = line.strip()
            if not temp:
                continue
            try:
                if temp[-2:].lower() in (" r", " t"):
                    stamp, channel, frame, direction = temp.split()
                    is_rx = direction.lower() == "r"
                else:
                    stamp, channel, frame = temp.split()
                    is_rx = True
                can_id_text, data = frame.split("#", maxsplit=1)
                can_id = int(can_id_text, 16)
                if can_id & _ERROR_FRAME == _ERROR_FRAME:
                    msg = None
                else:
                    msg = message(
                        timestamp=float(stamp[1:-1]),
                        arbitration_id=can_id & 0x1FFFFFFF,
                        is_extended_id=len(can_id_text) > 3,
                        is_rx=is_rx,
                        data=bytearray.fromhex(data),
                        channel=int(channel) if channel.isdigit() else channel,
                    )
            except Exception:
                msg = None
            if msg is None:  # whatever python-can makes of the line, or raises for it
                msg = next(iter(CanutilsLogReader(io.StringIO(line))), None)
                if msg is None:
                    continue
            yield msg

    def stop(self) -> None:
        self._lines.close()


_ERROR_FRAME = 0x20000000 | 0x00000080
"""CAN_ERR_FLAG | CAN_ERR_BUSERROR: python-can reads such an ID as an error frame."""


class LogFile:
    """The frames of one log file, read once by iterating, up to the first damage (then in `damage`).

    Iterating raises LogError when the file cannot be read at all or holds no frame.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames = 0
        """Frames yielded so far."""
        self.damage: LogError | None = None
        """Where and why reading stopped before the end of the file, once it did."""
        compressed = path.suffix.lower() == ".gz"
        self._suffix = (path.with_suffix("") if compressed else path).suffix.lower()
        self._compressed = compressed
        self._lines: _Lines | None = None
        self._binary: BufferedIOBase | None = None
        self._file: BinaryIO | None = None
        """The file on disk as it is read (under the gzip layer of a .gz), for `read_fraction`."""
        self._size = 0

    def read_fraction(self) -> float | None:
        """How much of the file has been read, 0 to 1 (of the compressed file for a .gz); None when python-can's
        reader opens the file itself (databases, MF4) or it is closed."""
        if self._file is None or self._file.closed or not self._size:
            return None
        return min(1.0, self._file.tell() / self._size)

    def __iter__(self) -> Iterator[can.Message]:
        reader = self._open()
        messages = iter(reader)
        try:
            while True:
                try:
                    msg = next(messages)
                except StopIteration:
                    break
                except Exception as err:  # python-can's parsers raise anything on a damaged file
                    self.damage = LogError(self.path, self._position(), self._reason(err))
                    break
                if not math.isfinite(msg.timestamp):
                    self.damage = LogError(self.path, self._position(), f"timestamp {msg.timestamp} is not finite")
                    break
                if self._lines is not None and self._lines.cut:  # its frame may have lost data bytes
                    self.damage = LogError(self.path, self._position(), "the file ends in the middle of this line")
                    break
                self.frames += 1
                yield msg
        finally:
            reader.stop()
            self._close()
        if not self.frames:
            raise self.damage or LogError(self.path, None, "no CAN frames in it")

    def _open(self) -> _Reader:
        """python-can's reader for the suffix, on a file that says where the reader is."""
        path, suffix = self.path, self._suffix
        kind = MESSAGE_READERS.get(suffix)
        if kind is None:
            known = ", ".join(sorted(MESSAGE_READERS))
            raise LogError(path, None, f"unknown log format {suffix or 'without a suffix'!r} (known: {known}, .gz)")
        if not path.is_file():
            raise LogError(path, None, "not a file" if path.exists() else "no such file")
        self._size = path.stat().st_size
        if self._size == 0:
            raise LogError(path, None, "the file is empty")
        try:
            self._file = path.open("rb")
        except OSError as err:
            raise LogError(path, None, f"cannot read: {err.strerror or err}") from err
        raw: BufferedIOBase = gzip.GzipFile(fileobj=self._file, mode="rb") if self._compressed else self._file
        file: Any = path
        if kind is CanutilsLogReader:
            self._lines = _Lines(raw)
            return _CandumpReader(self._lines)
        if issubclass(kind, TextIOMessageReader):
            file = self._lines = _Lines(raw)
        elif issubclass(kind, BinaryIOMessageReader):
            file = self._binary = raw
        else:
            raw.close()  # a database or MF4 reader opens the path itself
            self._close()
        try:
            return kind(file)
        except Exception as err:  # BLFReader parses the header here and raises anything
            damage = LogError(path, self._position(), self._reason(err))
            raw.close()
            self._close()
            raise damage from err

    def _close(self) -> None:
        """Close the file on disk (closing the gzip layer leaves it open)."""
        if self._file is not None:
            self._file.close()

    def _position(self) -> str:
        """Where the reader is: the line it read last, the byte offset, or the frame it is at."""
        if self._lines is not None:
            return f"line {self._lines.number}"
        if self._binary is not None:
            return f"byte {self._binary.tell()}"
        return f"frame {self.frames + 1}"

    def _reason(self, err: BaseException) -> str:
        detail = str(err) or type(err).__name__
        if isinstance(err, OSError | EOFError | zlib.error):  # the file itself (or its gzip layer), not its content
            return f"cannot read the file from here ({detail})"
        if isinstance(err, UnicodeDecodeError):
            return f"not text (byte {err.object[err.start]:#04x} is not UTF-8)"
        if self._lines is None:
            return f"not valid {self._suffix} data ({detail})"
        reason = f"not a valid {self._suffix} line ({detail})"
        return f"{reason}; the file ends in the middle of it" if self._lines.cut else reason
