"""The price table: money per million input and output tokens, per model, from a YAML file the user keeps
(``CORTEX_PRICES``). Cortex ships no prices: they change, and a stale figure would be a made-up one. Models
missing from the table get no cost in the report, with the reason."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cortex.errors import InputError
from cortex.roster.documents import parse_yaml, read_text


class Price(BaseModel):
    """What one model costs."""

    model_config = ConfigDict(extra="forbid")

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


def load_prices(path: Path) -> dict[str, dict[str, float]]:
    """``{model: {input_per_mtok, output_per_mtok}}`` from ``path``; ``InputError`` naming the entry that is wrong."""
    raw = parse_yaml(read_text(path, "price table"), str(path)) or {}
    if not isinstance(raw, dict):
        raise InputError(str(path), "the price table must map model names to prices", hint="see README, Configuration")
    out = {}
    for model, entry in raw.items():
        try:
            out[str(model)] = Price.model_validate(entry).model_dump()
        except ValidationError as exc:
            problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise InputError(
                str(path), problem, field=str(model), hint="give input_per_mtok and output_per_mtok"
            ) from exc
    return out
