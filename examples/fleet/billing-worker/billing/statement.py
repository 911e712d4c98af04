"""Monthly statements as plain-text tables."""

from tabulate import tabulate


def statement(customer: str, lines: list[tuple[str, int]]) -> str:
    """A statement: one row per charge (description, cents) and the total."""
    rows = [(description, f"{cents / 100:.2f}") for description, cents in lines]
    rows.append(("total", f"{sum(c for _, c in lines) / 100:.2f}"))
    return f"Statement for {customer}\n" + tabulate(rows, headers=["charge", "EUR"])
