"""CounterRate: SNMP counters to per-second rates across wraps, resets and restarts."""

import pytest

from agent.drivers._rate import CounterRate

W64 = 2**64
W32 = 2**32


def test_first_sample_gives_no_rate_then_rates_follow() -> None:
    rate = CounterRate(64)
    first = rate.update(1000, at=100.0, uptime=10_000)
    assert first.value is None and "first sample" in (first.reason or "")
    assert rate.update(1600, at=110.0, uptime=11_000).value == 60.0
    assert rate.update(1600, at=120.0, uptime=12_000).value == 0.0


@pytest.mark.parametrize(("width", "modulus"), [(64, W64), (32, W32)])
def test_a_wrap_past_the_top_counts_the_octets_across_it(width: int, modulus: int) -> None:
    rate = CounterRate(width)
    rate.update(modulus - 100, at=0.0, uptime=1)
    assert rate.update(300, at=2.0, uptime=201).value == 200.0  # 100 to the top + 300


def test_uptime_going_back_is_a_restart_not_a_wrap() -> None:
    rate = CounterRate(64)
    rate.update(5_000_000, at=0.0, uptime=900_000)
    after = rate.update(1_000, at=60.0, uptime=3_000)
    assert after.value is None and "restarted" in (after.reason or "")
    # the next sample compares with the post-restart value
    assert rate.update(7_000, at=120.0, uptime=9_000).value == 100.0


def test_restart_with_counter_still_higher_gives_no_rate_either() -> None:
    """Uptime going back wins even when the counter happens to be higher than before."""
    rate = CounterRate(64)
    rate.update(100, at=0.0, uptime=500_000)
    assert rate.update(10**9, at=60.0, uptime=100).value is None


def test_a_big_drop_without_uptime_is_a_reset_not_a_huge_spike() -> None:
    rate = CounterRate(64)
    rate.update(10**12, at=0.0)
    reset = rate.update(5, at=60.0)
    assert reset.value is None and "reset" in (reset.reason or "")
    assert rate.update(65, at=120.0).value == 1.0


def test_32_bit_reset_from_low_value_is_not_read_as_a_wrap() -> None:
    rate = CounterRate(32)
    rate.update(1_000_000, at=0.0, uptime=1)
    assert rate.update(10, at=10.0, uptime=1001).value is None


def test_time_not_moving_forward_gives_no_rate() -> None:
    rate = CounterRate(64)
    rate.update(10, at=50.0)
    assert rate.update(20, at=50.0).value is None
    assert rate.update(30, at=49.0).value is None


def test_out_of_range_value_is_refused_and_restarts_the_series() -> None:
    rate = CounterRate(32)
    rate.update(10, at=0.0)
    bad = rate.update(W32, at=1.0)
    assert bad.value is None and "32-bit" in (bad.reason or "")
    assert rate.update(10, at=2.0).value is None  # first sample again
    with pytest.raises(ValueError):
        CounterRate(16)
