"""What keeps one client of the catalog from starving the others: a worst-case cost for GraphQL queries (nested
lineage multiplies), and a cap on the streams of changes (``/events`` and GraphQL subscriptions).

strawberry's own extensions limit depth, aliases and tokens; the cost rule here is a graphql-core validation rule,
so a query over the limit is refused before any resolver runs.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)

from cortex.catalog.config import CatalogConfig

LIST_DEFAULTS = {"assets": ("first", 50), "search": ("limit", 20)}
"""Fields that return a page, with the argument that sizes it and its default."""


def fan_out(field: FieldNode, config: CatalogConfig) -> int:
    """How many items ``field`` may return at most (1 for a field that is not a list)."""
    name = field.name.value
    if name == "lineage":
        return config.max_nodes
    if name not in LIST_DEFAULTS:
        return 1
    arg, default = LIST_DEFAULTS[name]
    for a in field.arguments or ():
        if a.name.value == arg:  # a literal sizes the page; a variable may be as large as allowed
            return int(a.value.value) if isinstance(a.value, IntValueNode) else config.max_limit
    return default


def cost_rule(config: CatalogConfig) -> type[ValidationRule]:
    """A validation rule refusing operations whose worst-case cost is over ``config.max_query_cost``."""
    limit = config.max_query_cost

    class QueryCost(ValidationRule):
        def cost(self, selections: SelectionSetNode | None, fragments: frozenset[str]) -> int:
            total = 0
            for sel in selections.selections if selections else ():
                if isinstance(sel, FieldNode):
                    total += 1 + fan_out(sel, config) * self.cost(sel.selection_set, fragments)
                elif isinstance(sel, InlineFragmentNode):
                    total += self.cost(sel.selection_set, fragments)
                elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in fragments:
                    fragment = self.context.get_fragment(sel.name.value)
                    if fragment is not None:
                        total += self.cost(fragment.selection_set, fragments | {sel.name.value})
                if total > limit:
                    return total  # over already: no need to add up the rest (it may be astronomically large)
            return total

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            cost = self.cost(node.selection_set, frozenset())
            if cost > limit:
                self.report_error(
                    GraphQLError(
                        f"query cost is over the limit of {limit:,} resolver calls (lists multiply what they "
                        f"select: lineage by up to {config.max_nodes:,} assets); ask for less, or nest less",
                        node,
                    )
                )

    return QueryCost


class StreamSlots:
    """Open streams of changes, at most ``limit``. Used from one event loop: no lock needed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def take(self) -> bool:
        """One more stream may open (and is counted), or not."""
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        """A stream closed."""
        self.open = max(0, self.open - 1)
