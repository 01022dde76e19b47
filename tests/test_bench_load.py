"""bench.inlet_load's memory figures: what tells a leak from a cache warming up."""

import pytest

from bench.inlet_load import rss_by_minute, slope_per_minute


def test_the_rss_of_each_minute_is_the_sample_nearest_it():
    samples = [(t, 100.0 + t / 10) for t in (0.0, 1.0, 59.2, 61.0, 119.9, 121.0, 150.0)]
    assert rss_by_minute(samples) == [100.0, 105.9, 112.0]
    assert rss_by_minute([]) == []


def test_a_cache_warming_up_flattens_where_a_leak_keeps_its_slope():
    warming = [(float(t), 100.0 + min(t, 60) / 15) for t in range(600)]  # +4 MB, then flat
    leaking = [(float(t), 100.0 + t / 60) for t in range(600)]  # +1 MB every minute
    second_half = [p for p in warming if p[0] >= 300]
    assert slope_per_minute(warming) > 0.1
    assert slope_per_minute(second_half) == pytest.approx(0.0, abs=1e-9)
    assert slope_per_minute([p for p in leaking if p[0] >= 300]) == pytest.approx(1.0)
