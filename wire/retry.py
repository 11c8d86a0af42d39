"""One retry classification and one backoff, for every Pantau sender: central's
InfluxDB writes, its webhooks and MQTT reconnects, and the agent's MQTT reconnects.

Modelled on Alertmanager's ``notify`` Retrier: the sender says what a failure means,
the caller decides what to do with it.

:func:`classify` sorts an HTTP answer into an :class:`Outcome`:

=========== ============================================= ================================
outcome      statuses                                      what the callers do
=========== ============================================= ================================
``OK``       2xx                                           done
``RETRY``    5xx, 408, 429, timeouts, connection errors    retry with backoff (honouring
                                                           ``Retry-After``)
``SETTING``  401, 403, 404                                 a setting is wrong (token,
                                                           database): InfluxDB writes hold
                                                           and retry until it is fixed; a
                                                           webhook fails for good
``TOO_LARGE`` 413                                          InfluxDB writes split the batch
``REFUSED``  any other 4xx                                 the content is refused: dead
                                                           letter (InfluxDB, per line) or
                                                           failed (webhook)
=========== ============================================= ================================

:class:`Backoff` is exponential with "equal jitter": attempt *n* waits between half and
all of ``min(cap, first * 2**n)``, so a city's gateways (or central's writers) coming
back after an outage don't all knock at once.
"""

import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff", "Outcome", "classify", "retry_after"]


class Outcome(enum.Enum):
    OK = "ok"
    RETRY = "retry"
    SETTING = "setting"
    TOO_LARGE = "too_large"
    REFUSED = "refused"

    @property
    def holds(self) -> bool:
        """Whether stored data must wait (not be dropped) while this lasts."""
        return self in (Outcome.RETRY, Outcome.SETTING)


def classify(status: int | None) -> Outcome:
    """What an HTTP status means for a sender; ``None`` (no answer: a timeout or a
    connection error) is ``RETRY``."""
    if status is None or status >= 500 or status in (408, 429):
        return Outcome.RETRY
    if status < 300:
        return Outcome.OK
    if status in (401, 403, 404):
        return Outcome.SETTING
    if status == 413:
        return Outcome.TOO_LARGE
    return Outcome.REFUSED


def retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime  # not at import: the agent never needs it

    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - now())


@dataclass(frozen=True)
class Backoff:
    """``delay(attempt)`` (0-based): ``first * 2**attempt`` capped at ``cap``, then scaled
    into its upper half at random."""

    first: float
    cap: float

    def delay(
        self,
        attempt: int,
        rand: Callable[[], float] = random.random,
        at_least: float | None = None,
    ) -> float:
        ceiling = min(self.cap, self.first * 2 ** min(attempt, 60))
        delay = ceiling / 2 + rand() * ceiling / 2
        if at_least is not None:  # a server's Retry-After wins over our own guess
            delay = max(delay, min(at_least, max(self.cap, 3600.0)))
        return delay
