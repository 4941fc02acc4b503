"""The few exception types the gateway raises; adapters wrap library errors in these with `from err`."""

from pathlib import Path


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is unusable; `problems` holds one line per bad key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class DecodeError(GatewayError):
    """A frame, a log or a received payload could not be decoded."""


class LogError(DecodeError):
    """A log file is unreadable (`where` is None) or damaged from `where` on (a line, or a byte offset)."""

    def __init__(self, path: Path, where: str | None, reason: str) -> None:
        super().__init__(f"{path}: {where}: {reason}" if where else f"{path}: {reason}")
        self.path = path
        self.where = where
        self.reason = reason


class BusError(GatewayError):
    """A CAN bus could not be opened or used."""


def unwrap(err: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups, as a failed TaskGroup raises it."""
    while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
        err = err.exceptions[0]
    return err
