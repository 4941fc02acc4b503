"""Capped exponential backoff with jitter: how every edge that fails waits before it tries again.

One rule for the supervised edges and the MQTT reconnect: 0.5 s, doubling per failed attempt up to 30 s, each
delay drawn from its upper half, so that a fleet of gateways behind one broken broker does not retry in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

FIRST = 0.5
"""Seconds before the first retry."""
CAP = 30.0
"""The longest wait between two attempts."""


def delay(attempt: int, rng: random.Random) -> float:
    """The wait before retry number `attempt` (from 0): min(CAP, FIRST x 2^attempt), times 50..100 %."""
    return min(CAP, FIRST * 2.0 ** min(attempt, 16)) * rng.uniform(0.5, 1.0)


@dataclass(slots=True)
class Backoff:
    """Counts failed attempts; `next()` is the wait before the next one, `reset()` after one that succeeded."""

    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        wait = delay(self.attempt, self.rng)
        self.attempt += 1
        return wait

    def reset(self) -> None:
        self.attempt = 0
