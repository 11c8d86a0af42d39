"""WrappingCounter: totals and rates across wraps, resets, first samples and long gaps."""

import pytest

from agent.counters import WrappingCounter

T0 = 1_700_000_000.0


def gauge(**kwargs: float) -> WrappingCounter:
    """A rain gauge: 0.2 mm per tip, 16-bit counter, rate in mm/h."""
    args: dict = {"wrap": 65536, "per_count": 0.2, "max_delta": 1000, "max_gap": 3600.0}
    args.update(kwargs)
    return WrappingCounter(**args)


def test_first_sample_gives_the_device_count_and_no_rate() -> None:
    counter = gauge()
    update = counter.update(150, T0)
    assert update.change == "first"
    assert update.total == 30.0
    assert update.rate is None
    assert update.delta == 0


def test_counting_up_adds_the_difference_and_gives_the_rate() -> None:
    counter = gauge()
    counter.update(100, T0)
    update = counter.update(103, T0 + 60)
    assert (update.change, update.delta) == ("count", 3)
    assert update.total == pytest.approx(20.6)
    assert update.rate == pytest.approx(0.6 * 60)  # 0.6 mm in one minute = 36 mm/h


def test_no_change_is_zero_rate() -> None:
    counter = gauge()
    counter.update(7, T0)
    update = counter.update(7, T0 + 60)
    assert update.rate == 0.0
    assert update.total == pytest.approx(1.4)


def test_wrap_near_the_top_counts_the_tips_across_zero() -> None:
    counter = gauge()
    counter.update(65534, T0)
    update = counter.update(3, T0 + 60)  # 65534 → 65535 → 0 → 1 → 2 → 3: 5 tips
    assert (update.change, update.delta) == ("wrap", 5)
    assert update.total == pytest.approx(65539 * 0.2)
    assert update.rate == pytest.approx(1.0 * 60)


def test_reset_is_not_negative_rain_and_not_a_wrap() -> None:
    counter = gauge()
    counter.update(1200, T0)
    update = counter.update(4, T0 + 60)  # the sensor rebooted and counted 4 tips since
    assert (update.change, update.delta) == ("reset", 4)
    assert update.total == pytest.approx(1204 * 0.2)
    assert update.rate is not None and update.rate >= 0
    assert update.rate == pytest.approx(0.8 * 60)


def test_reset_to_zero_adds_nothing() -> None:
    counter = gauge()
    counter.update(40000, T0)
    update = counter.update(0, T0 + 60)
    assert (update.change, update.delta, update.rate) == ("reset", 0, 0.0)
    assert update.total == pytest.approx(8000.0)


def test_reset_and_wrap_are_told_apart_by_max_delta() -> None:
    # the same drop 65000 → 500: 1036 tips if it wrapped; more than max_delta → reset
    strict = gauge(max_delta=1000)
    strict.update(65000, T0)
    assert strict.update(500, T0 + 60).change == "reset"
    lenient = gauge(max_delta=2000)
    lenient.update(65000, T0)
    update = lenient.update(500, T0 + 60)
    assert (update.change, update.delta) == ("wrap", 1036)


def test_default_max_delta_is_half_the_range() -> None:
    counter = WrappingCounter(wrap=65536)
    assert counter.max_delta == 32768


def test_implausible_jump_up_is_a_new_baseline() -> None:
    counter = gauge()
    counter.update(10, T0)
    update = counter.update(30000, T0 + 60)
    assert (update.change, update.delta, update.rate) == ("jump", 0, None)
    assert update.total == pytest.approx(2.0)
    after = counter.update(30002, T0 + 120)
    assert (after.change, after.delta) == ("count", 2)
    assert after.total == pytest.approx(2.4)


def test_long_gap_counts_the_tips_but_gives_no_rate() -> None:
    counter = gauge()
    counter.update(10, T0)
    update = counter.update(60, T0 + 7200)
    assert update.delta == 50
    assert update.total == pytest.approx(12.0)
    assert update.rate is None
    # the next regular sample has a rate again
    assert counter.update(61, T0 + 7260).rate == pytest.approx(0.2 * 60)


def test_without_max_gap_the_rate_is_the_average_over_the_gap() -> None:
    counter = gauge(max_gap=None)
    counter.update(10, T0)
    assert counter.update(60, T0 + 7200).rate == pytest.approx(10.0 / 2)


def test_repeated_or_older_sample_time_changes_nothing() -> None:
    counter = gauge()
    counter.update(10, T0)
    counter.update(12, T0 + 60)
    again = counter.update(50, T0 + 60)
    assert (again.delta, again.rate) == (0, None)
    assert again.total == pytest.approx(2.4)
    assert counter.update(13, T0 + 120).delta == 1  # still compared with 12


def test_many_wraps_accumulate() -> None:
    counter = WrappingCounter(wrap=256, per_count=1.0, max_delta=100)
    value, total = 200, 200
    counter.update(value, T0)
    for step in range(1, 50):
        value = (value + 37) % 256
        total += 37
        update = counter.update(value, T0 + step)
        assert update.total == total
        assert update.rate == pytest.approx(37 * 3600)


def test_value_out_of_range_is_refused() -> None:
    counter = gauge()
    with pytest.raises(ValueError, match=r"outside 0\.\.65535"):
        counter.update(65536, T0)
    with pytest.raises(ValueError):
        counter.update(-1, T0)


def test_float_totals_are_rounded() -> None:
    counter = gauge()
    counter.update(0, T0)
    assert counter.update(3, T0 + 60).total == 0.6
