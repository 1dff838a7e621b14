"""What a long run prints while it trains: one line per epoch with the time left."""

from __future__ import annotations

import time
from collections import deque
from typing import Any


class EpochClock:
    """The line printed after each epoch of a long run: which run, which epoch, its numbers, and
    the time left (a log of ``reslab train`` or ``reslab reproduce`` shows where a run of hours
    stands).

    The time left is at the pace of the last :attr:`WINDOW` epochs, not of the whole run so far: a
    first epoch that compiled the model, a run paused for a while or slowed by other work on the
    machine weighs on the estimate for a few epochs only.
    """

    #: Epochs whose mean duration sets the pace.
    WINDOW = 3

    def __init__(self, name: str, start_epoch: int, epochs: int, clock=time.perf_counter):
        self.name, self.epochs, self.clock = name, epochs, clock
        # (epoch, when it ended) of the last WINDOW epochs and the one before them; the start counts as one
        self.ends = deque([(start_epoch, clock())], maxlen=self.WINDOW + 1)

    def line(self, row: dict[str, Any]) -> str:
        done = row["epoch"]
        self.ends.append((done, self.clock()))
        (first, t_first), (last, t_last) = self.ends[0], self.ends[-1]
        per_epoch = (t_last - t_first) / max(last - first, 1)
        left = per_epoch * (self.epochs - done)
        finish = time.strftime("%H:%M %Z", time.localtime(time.time() + left))
        return (f"[reslab] {self.name + ': ' if self.name else ''}epoch {done}/{self.epochs}: train loss "
                f"{row['train_loss']:.4f} acc {row['train_acc']:.4f}, test loss {row['test_loss']:.4f} acc "
                f"{row['test_acc']:.4f}; {duration(per_epoch)} per epoch, {duration(left)} left "
                f"(about {finish})")


def duration(seconds: float) -> str:
    """``42 s``, ``3.5 min`` or ``2 h 05 min``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
