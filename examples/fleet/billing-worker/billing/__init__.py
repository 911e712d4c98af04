"""Billing worker: monthly statements for the payments API's customers."""
