"""The loss/duplicate checks the end-to-end tests rely on must themselves catch both."""

import pytest

from tests.e2e.helpers import assert_contiguous, never_sampled


def test_contiguous_counts_pass():
    assert_contiguous([10.0, 11.0, 12.0])


@pytest.mark.parametrize("values", [[10.0, 12.0], [10.0, 11.0, 11.0], [10.0, 12.0, 11.0]])
def test_a_gap_a_repeat_or_disorder_fails(values):
    with pytest.raises(AssertionError):
        assert_contiguous(values)


def test_only_logged_skipped_ticks_may_be_absent():
    log = "DEBUG agent.poller: device c: polling fell behind, skipped 1 tick(s) from 1.100 to 1.100"
    assert never_sampled(log) == {11}
    assert_contiguous([10.0, 12.0], never_sampled(log))
    with pytest.raises(AssertionError):
        assert_contiguous([10.0, 13.0], never_sampled(log))
