"""The HTTP face of the stock service, instrumented with prometheus-fastapi-instrumentator."""

from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator

from inventory.stock import Stock

app = FastAPI(title="inventory-service")
stock = Stock()
Instrumentator().instrument(app).expose(app)


@app.get("/stock/{sku}")
def level(sku: str) -> dict[str, int]:
    """The stock level of one item."""
    return {"level": stock.on_hand(sku)}
