"""Payments API: amounts are integer cents."""
