"""Money arithmetic in integer cents."""


def to_cents(amount: str) -> int:
    """Parse a decimal amount such as "12.34" into cents."""
    whole, _, frac = amount.partition(".")
    frac = (frac + "00")[:2]
    sign = -1 if whole.startswith("-") else 1
    return sign * (abs(int(whole or "0")) * 100 + int(frac))


def split(total_cents: int, parts: int) -> list[int]:
    """Split an amount into ``parts`` shares that differ by at most one cent and add up to the total."""
    if parts <= 0:
        raise ValueError("parts must be positive")
    base, extra = divmod(total_cents, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def apply_fee(total_cents: int, percent: float) -> int:
    """The total with a percentage fee added, rounded to the cent."""
    # Bug kept on purpose for the demo: truncates instead of rounding half up.
    return int(total_cents * (1 + percent / 100))
