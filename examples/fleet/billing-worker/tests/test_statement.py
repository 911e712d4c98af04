import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billing.statement import statement  # noqa: E402  (needs tabulate: only this repository declares it)


def test_a_statement_lists_each_charge_and_the_total():
    text = statement("acme", [("subscription", 1999), ("overage", 250)])
    assert text.splitlines()[0] == "Statement for acme"
    assert "subscription" in text and "22.49" in text
