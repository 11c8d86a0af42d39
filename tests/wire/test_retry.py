"""wire.retry: one classification and one backoff for every sender."""

import pytest

from wire.retry import Backoff, Outcome, classify, retry_after


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.OK),
        (204, Outcome.OK),
        (None, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (408, Outcome.RETRY),
        (429, Outcome.RETRY),
        (401, Outcome.SETTING),
        (403, Outcome.SETTING),
        (404, Outcome.SETTING),
        (413, Outcome.TOO_LARGE),
        (400, Outcome.REFUSED),
        (422, Outcome.REFUSED),
    ],
)
def test_classify(status, outcome):
    assert classify(status) is outcome
    assert outcome.holds == (outcome in (Outcome.RETRY, Outcome.SETTING))


def test_backoff_is_exponential_capped_with_equal_jitter():
    b = Backoff(1, 60)
    assert b.delay(0, rand=lambda: 0.0) == 0.5
    assert b.delay(0, rand=lambda: 1.0) == 1.0
    assert b.delay(3, rand=lambda: 1.0) == 8.0
    assert b.delay(10, rand=lambda: 0.0) == 30.0
    assert b.delay(10_000, rand=lambda: 1.0) == 60.0


def test_retry_after_wins_over_a_shorter_backoff():
    b = Backoff(0.2, 10)
    assert b.delay(0, rand=lambda: 1.0, at_least=7) == 7
    assert b.delay(9, rand=lambda: 1.0, at_least=1) == 10
    assert b.delay(0, rand=lambda: 1.0, at_least=10**9) == 3600  # a silly header is capped


def test_retry_after_header_forms():
    assert retry_after("12") == 12.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412470.0) == 10.0
    assert retry_after("soon") is None
    assert retry_after(None) is None
