import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inventory.stock import Stock  # noqa: E402


def test_receive_then_ship_leaves_the_difference():
    s = Stock()
    s.receive("north", "sku-1", 10)
    s.ship("north", "sku-1", 4)
    assert s.on_hand("sku-1") == 6


def test_shipping_more_than_on_hand_is_refused():
    s = Stock()
    s.receive("north", "sku-1", 1)
    with pytest.raises(ValueError):
        s.ship("north", "sku-1", 2)


def test_on_hand_sums_warehouses():
    s = Stock()
    s.receive("north", "sku-1", 2)
    s.receive("south", "sku-1", 3)
    assert s.on_hand("sku-1") == 5
