"""Recorded CAN logs (format by suffix: `.log` candump, `.asc`, `.blf`, ... optionally `.gz`) for replay and decode.

python-can's readers stop with whatever their parser raises on a damaged file (ValueError, IndexError,
struct.error, UnicodeDecodeError, ...), mid-iteration and without saying where. The logs installers send are
often cut short (unplugged mid-write) or not logs at all, so `LogFile` yields the frames up to the first damage
and records the damage as a `LogError` naming the file and the line (the byte offset in a binary format); a file
with no frame in it raises that error instead. A timestamp that is not finite is damage too (replay's clock
must never see one), and so is a last line without its end of line, even when it parses: cut in its data, it
would be a shorter frame than the one recorded.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Iterator
from io import BufferedIOBase
from pathlib import Path
from typing import Any

import can
from can.io import MESSAGE_READERS
from can.io.generic import BinaryIOMessageReader, MessageReader, TextIOMessageReader

from gateway.errors import LogError

MAX_LINE = 1 << 16
"""Bytes; a longer line is not a CAN log line (and reading it whole could take all the memory)."""


class _Lines:
    """The lines of a text log, decoded and counted, as python-can's text readers iterate their file."""

    def __init__(self, raw: BufferedIOBase) -> None:
        self._raw = raw
        self.number = 0
        self.cut = False
        """The last line read has no end of line: the file ends in the middle of it."""

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        self.number += 1  # before reading: a read that fails names the line it was reading
        line = self._raw.readline(MAX_LINE + 1)
        if not line:
            self.number -= 1
            raise StopIteration
        if len(line) > MAX_LINE:
            raise ValueError(f"longer than {MAX_LINE} bytes")
        self.cut = not line.endswith(b"\n")
        return line.decode()

    def close(self) -> None:
        self._raw.close()


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
        if not self.frames:
            raise self.damage or LogError(self.path, None, "no CAN frames in it")

    def _open(self) -> MessageReader:
        """python-can's reader for the suffix, on a file that says where the reader is."""
        path, suffix = self.path, self._suffix
        kind = MESSAGE_READERS.get(suffix)
        if kind is None:
            known = ", ".join(sorted(MESSAGE_READERS))
            raise LogError(path, None, f"unknown log format {suffix or 'without a suffix'!r} (known: {known}, .gz)")
        if not path.is_file():
            raise LogError(path, None, "not a file" if path.exists() else "no such file")
        if path.stat().st_size == 0:
            raise LogError(path, None, "the file is empty")
        try:
            raw: BufferedIOBase = gzip.GzipFile(path, "rb") if self._compressed else path.open("rb")
        except OSError as err:
            raise LogError(path, None, f"cannot read: {err.strerror or err}") from err
        file: Any = path
        if issubclass(kind, TextIOMessageReader):
            file = self._lines = _Lines(raw)
        elif issubclass(kind, BinaryIOMessageReader):
            file = self._binary = raw
        else:
            raw.close()  # a database or MF4 reader opens the path itself
        try:
            return kind(file)
        except Exception as err:  # BLFReader parses the header here and raises anything
            damage = LogError(path, self._position(), self._reason(err))
            raw.close()
            raise damage from err

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
