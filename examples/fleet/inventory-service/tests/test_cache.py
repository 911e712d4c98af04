"""Planted for the Cortex demo: a flaky test. It depends on state a previous run leaves behind (a real kind of
flakiness), so it fails on a fresh checkout and passes when run again."""

from pathlib import Path


def test_warehouse_cache_is_warm():
    marker = Path(__file__).with_name(".cache-warm")
    warm = marker.exists()
    marker.touch()
    assert warm, "cache was cold: this test passes only after another run warmed it"
