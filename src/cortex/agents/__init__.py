"""LLM agents on pydantic-ai: model providers, a deterministic scripted model, and budget enforcement through the
run's token ledger (no model call without a reservation)."""
