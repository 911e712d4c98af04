"""Stock bookkeeping."""

from collections import defaultdict


class Stock:
    """Units on hand per (warehouse, sku)."""

    def __init__(self) -> None:
        self._units: dict[tuple[str, str], int] = defaultdict(int)

    def receive(self, warehouse: str, sku: str, units: int) -> None:
        if units <= 0:
            raise ValueError("units must be positive")
        self._units[(warehouse, sku)] += units

    def ship(self, warehouse: str, sku: str, units: int) -> None:
        if units > self._units[(warehouse, sku)]:
            raise ValueError(f"only {self._units[(warehouse, sku)]} units of {sku} in {warehouse}")
        self._units[(warehouse, sku)] -= units

    def on_hand(self, sku: str) -> int:
        return sum(n for (_, s), n in self._units.items() if s == sku)
