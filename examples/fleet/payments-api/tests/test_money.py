import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from payments.money import apply_fee, split, to_cents  # noqa: E402


def test_to_cents_parses_decimal_amounts():
    assert to_cents("12.34") == 1234
    assert to_cents("0.5") == 50
    assert to_cents("7") == 700


def test_split_adds_up_and_differs_by_at_most_one_cent():
    shares = split(1000, 3)
    assert sum(shares) == 1000
    assert max(shares) - min(shares) <= 1


def test_apply_fee_rounds_to_nearest_cent():
    # 999 cents + 2.5% = 1023.975 -> 1024 cents
    assert apply_fee(999, 2.5) == 1024
