"""Statistical disclosure control for published count tables.

A federated result is published to the analyst, so each count in it must not describe a handful of
patients, and no withheld count may be recovered from the counts that are shown. This module applies,
to a table of counts with optional margins (a row and/or a column labelled ``margin_label``, ``"all"`` by
default, holding the sums of the other rows/columns):

* **primary suppression**: a cell with ``0 < count < min_cell_size`` is withheld, and so is a non-zero
  cell to which fewer than ``min_contributing_nodes`` nodes contributed (give ``contributors``). Zero
  cells describe nobody and are shown unless ``protect_zeros`` is set.
* **complementary suppression**: more cells are withheld until no withheld cell equals a sum or
  difference of shown cells and margins. The row/column equations of such a table form a graph (one
  node per equation, one edge per cell); a withheld cell can be derived exactly when it is a bridge of the
  graph of withheld cells. Each bridge is closed into a cycle along the cheapest path of shown cells (cost:
  the count, so small inner cells are withheld before large margins; zero cells only as a last resort).
* **rounding**: every published count is rounded to the nearest multiple of ``rounding_base`` (halves
  up); suppression is decided on the exact counts. Statistics computed from the data (means, ratios) are
  not rounded.

Scalar releases (a regression's number of rows and events) use :func:`check_count`,
:func:`check_contributing_nodes` and :func:`publish_count`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, fields
from itertools import count as counter
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["COMPLEMENTARY", "FEW_NODES", "SMALL", "DisclosureConfig", "DisclosureError", "ProtectedTable",
           "check_contributing_nodes", "check_count", "contributing_nodes", "derivable_cells", "protect_table",
           "publish_count", "round_count"]

#: Reasons a cell is withheld (the values of :attr:`ProtectedTable.reasons`).
SMALL = "below min_cell_size"
FEW_NODES = "too few contributing nodes"
COMPLEMENTARY = "complementary"

Cell = tuple[Hashable, Hashable]


class DisclosureError(ValueError):
    """A requested release would disclose small counts, or its input cannot be protected as given."""


@dataclass(frozen=True)
class DisclosureConfig:
    """What may be published. The defaults withhold counts 1 to 4 and round nothing."""

    #: Non-zero counts below this are withheld.
    min_cell_size: int = 5
    #: Non-zero counts from fewer nodes than this are withheld (1: no such rule).
    min_contributing_nodes: int = 1
    #: Published counts are rounded to a multiple of this (1: no rounding).
    rounding_base: int = 1
    #: Treat zero counts like small ones (withhold them).
    protect_zeros: bool = False
    #: Label of the margin row and column (totals) in tables given to :func:`protect_table`.
    margin_label: str = "all"

    def __post_init__(self) -> None:
        for name in ("min_cell_size", "min_contributing_nodes", "rounding_base"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DisclosureError(f"{name} must be an integer of at least 1, got {value!r}")
        if not isinstance(self.protect_zeros, bool):
            raise DisclosureError(f"protect_zeros must be True or False, got {self.protect_zeros!r}")
        if not isinstance(self.margin_label, str) or not self.margin_label:
            raise DisclosureError(f"margin_label must be a non-empty string, got {self.margin_label!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> DisclosureConfig:
        """A config from a mapping (e.g. parsed JSON or ``ALGO_*`` environment text); unknown keys fail."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise DisclosureError(f"unknown disclosure setting(s) {unknown}; known: {sorted(known)}")
        parsed: dict[str, Any] = {}
        for name, raw in values.items():
            if name == "margin_label":
                parsed[name] = raw
            elif name == "protect_zeros":
                parsed[name] = raw if isinstance(raw, bool) else str(raw).strip().lower() in ("1", "true", "yes")
            else:
                try:
                    parsed[name] = raw if isinstance(raw, int) else int(str(raw).strip())
                except ValueError:
                    raise DisclosureError(f"{name} must be an integer, got {raw!r}") from None
        return cls(**parsed)

    def is_primary(self, value: int, nodes: int | None = None) -> str | None:
        """Why a count may not be shown on its own (:data:`SMALL`, :data:`FEW_NODES`), or None."""
        if value == 0:
            return SMALL if self.protect_zeros else None
        if value < self.min_cell_size:
            return SMALL
        if nodes is not None and nodes < self.min_contributing_nodes:
            return FEW_NODES
        return None


def round_count(value: int, base: int) -> int:
    """``value`` rounded to the nearest multiple of ``base`` (halves up): 7 -> 5, 8 -> 10 with base 5."""
    return base * ((2 * int(value) + base) // (2 * base))


def check_count(name: str, value: int, config: DisclosureConfig) -> None:
    """Raise DisclosureError if the count ``name`` may not be published (see :meth:`DisclosureConfig.is_primary`)."""
    if config.is_primary(int(value)) is not None:
        raise DisclosureError(f"the {name} count is below min_cell_size={config.min_cell_size}; a result built on "
                              f"it would describe individual patients. Use more data or a coarser analysis")


def check_contributing_nodes(nodes: int, config: DisclosureConfig, what: str = "the result") -> None:
    """Raise DisclosureError if fewer than ``min_contributing_nodes`` nodes contributed to ``what``."""
    if nodes < config.min_contributing_nodes:
        raise DisclosureError(f"only {nodes} node(s) contributed to {what}, fewer than min_contributing_nodes="
                              f"{config.min_contributing_nodes}; it would describe a single site's patients")


def publish_count(value: int, config: DisclosureConfig) -> int | None:
    """A lone count as it may be published: rounded, or None (withheld) when it is small."""
    return None if config.is_primary(int(value)) is not None else round_count(int(value), config.rounding_base)


def contributing_nodes(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Per cell, how many of the nodes' count tables (same labels; absent cells count as 0) are non-zero."""
    if not tables:
        raise DisclosureError("contributing_nodes needs at least one node's table")
    index, columns = tables[0].index, tables[0].columns
    for table in tables[1:]:
        index, columns = index.union(table.index, sort=False), columns.union(table.columns, sort=False)
    total = pd.DataFrame(0, index=index, columns=columns)
    for table in tables:
        total += (table.reindex(index=index, columns=columns).fillna(0) != 0).astype(int)
    return total


@dataclass(frozen=True)
class ProtectedTable:
    """A count table as it may be published.

    ``counts``: the published counts (rounded; withheld cells ``<NA>``, dtype ``Int64``). ``withheld``:
    True where a cell is withheld. ``reasons``: per cell ``""`` or one of :data:`SMALL`, :data:`FEW_NODES`,
    :data:`COMPLEMENTARY`.
    """

    counts: pd.DataFrame
    withheld: pd.DataFrame
    reasons: pd.DataFrame

    def withheld_cells(self) -> list[Cell]:
        """(row, column) of every withheld cell, in table order."""
        return [(r, c) for r in self.withheld.index for c in self.withheld.columns if self.withheld.at[r, c]]


def protect_table(table: pd.DataFrame, config: DisclosureConfig | None = None, *,
                  contributors: pd.DataFrame | None = None) -> ProtectedTable:
    """Suppress (primary and complementary) and round a table of non-negative integer counts.

    A row labelled ``config.margin_label`` must hold the column sums of the other rows, a column so
    labelled the row sums; either, both or neither may be present. ``contributors`` (same labels) gives per
    cell the number of nodes with a non-zero count (see :func:`contributing_nodes`).
    """
    config = config or DisclosureConfig()
    values = _checked_counts(table, config.margin_label)
    if contributors is not None and (not contributors.index.equals(table.index)
                                     or not contributors.columns.equals(table.columns)):
        raise DisclosureError("contributors must have the same row and column labels as the table")
    nodes = None if contributors is None else contributors.to_numpy(dtype=int)
    reasons = pd.DataFrame("", index=table.index, columns=table.columns, dtype=object)
    for i, r in enumerate(table.index):
        for j, c in enumerate(table.columns):
            reasons.at[r, c] = config.is_primary(values[(r, c)], None if nodes is None else int(nodes[i, j])) or ""
    graph = _EquationGraph(table, config.margin_label)
    hidden = {cell for cell in values if reasons.at[cell]}
    for cell in graph.close_bridges(hidden, values):
        reasons.at[cell] = COMPLEMENTARY
    withheld = reasons != ""
    rounded = [[round_count(values[(r, c)], config.rounding_base) for c in table.columns] for r in table.index]
    published = pd.DataFrame(rounded, index=table.index, columns=table.columns).astype("Int64").mask(withheld)
    return ProtectedTable(published, withheld, reasons)


def derivable_cells(table: pd.DataFrame, withheld: pd.DataFrame, margin_label: str = "all") -> list[Cell]:
    """Withheld cells whose exact value follows from the shown cells through the margin equations.

    Linear algebra: cell i is determined iff the unit vector e_i lies in the row space of the equations
    restricted to the withheld cells. Use it to audit a suppression pattern made elsewhere.
    """
    _checked_counts(table, margin_label)
    cells: list[Cell] = [(r, c) for r in table.index for c in table.columns if bool(withheld.at[r, c])]
    if not cells:
        return []
    rows = _EquationGraph(table, margin_label).equations(cells)
    if not rows:
        return []
    matrix = np.array(rows, dtype=float)
    _, singular, vt = np.linalg.svd(matrix)
    rank = int((singular > 1e-9 * max(1.0, singular.max(initial=0.0))).sum())
    null_space = vt[rank:]  # rows span the directions in which the withheld cells can move together
    movable = np.abs(null_space).max(axis=0, initial=0.0) > 1e-9
    return [cell for cell, free in zip(cells, movable, strict=True) if not free]


# ----------------------------------------------------------------------------- internals
def _checked_counts(table: pd.DataFrame, margin: str) -> dict[Cell, int]:
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise DisclosureError("protect a non-empty pandas DataFrame of counts (rows x columns)")
    if not table.index.is_unique or not table.columns.is_unique:
        raise DisclosureError("the table's row and column labels must be unique")
    values: dict[Cell, int] = {}
    for r in table.index:
        for c in table.columns:
            raw = table.at[r, c]
            number = float(raw) if isinstance(raw, (int, float, np.integer, np.floating)) and not pd.isna(raw) \
                else math.nan
            if not (number >= 0 and number == int(number)):
                raise DisclosureError(f"cell ({r!r}, {c!r}) is {raw!r}; counts must be non-negative integers "
                                      f"(write 0 for an empty cell)")
            values[(r, c)] = int(number)
    rows = [r for r in table.index if r != margin]
    columns = [c for c in table.columns if c != margin]
    if margin in table.index:
        for c in table.columns:
            if values[(margin, c)] != sum(values[(r, c)] for r in rows):
                raise DisclosureError(f"margin row {margin!r} is not the sum of the other rows in column {c!r}")
    if margin in table.columns:
        for r in table.index:
            if values[(r, margin)] != sum(values[(r, c)] for c in columns):
                raise DisclosureError(f"margin column {margin!r} is not the sum of the other columns in row {r!r}")
    return values


class _EquationGraph:
    """The margin equations of a table as a graph: one node per equation, one edge per cell.

    With a margin column, row r has the equation sum(inner cells of r) - (r, margin) = 0; with a margin row,
    column c has one likewise. A cell lies in its row's and its column's equation; where one of them does not
    exist, that end of the edge is the shared node ``ground``, which carries no equation. The equations then
    are (up to signs) the graph's incidence matrix, so the ways withheld cells can change together without
    changing any shown number are the cycles of the withheld cells' graph.
    """

    GROUND = 0

    def __init__(self, table: pd.DataFrame, margin: str) -> None:
        self.margin = margin
        self.has_row_equations = margin in table.columns
        self.has_column_equations = margin in table.index
        self.ends: dict[Cell, tuple[int, int]] = {}
        node_ids: dict[tuple[str, Hashable], int] = {}
        for r in table.index:
            for c in table.columns:
                u = node_ids.setdefault(("row", r), len(node_ids) + 1) if self.has_row_equations else self.GROUND
                v = node_ids.setdefault(("col", c), len(node_ids) + 1) if self.has_column_equations else self.GROUND
                self.ends[(r, c)] = (u, v)
        self.order = {cell: i for i, cell in enumerate(self.ends)}

    def equations(self, cells: list[Cell]) -> list[list[float]]:
        """Coefficients of the equations over ``cells`` (one row per equation that involves any of them)."""
        by_node: dict[int, list[float]] = {}
        for j, (r, c) in enumerate(cells):
            for node, is_total in zip(self.ends[(r, c)], (c == self.margin, r == self.margin), strict=True):
                if node != self.GROUND:
                    by_node.setdefault(node, [0.0] * len(cells))[j] += -1.0 if is_total else 1.0
        return list(by_node.values())

    def close_bridges(self, hidden: set[Cell], values: dict[Cell, int]) -> list[Cell]:
        """Add cells to ``hidden`` until no hidden cell is a bridge; return the added cells in order."""
        big = sum(values.values()) + 1
        cost = {cell: float(v) if v > 0 else float(big) for cell, v in values.items()}
        added: list[Cell] = []
        while True:
            bridge = next((cell for cell in sorted(hidden, key=self.order.__getitem__) if self._is_bridge(cell, hidden)),
                          None)
            if bridge is None:
                return added
            for cell in self._cheapest_path(bridge, hidden, cost):
                if cell not in hidden:
                    hidden.add(cell)
                    added.append(cell)

    def _is_bridge(self, cell: Cell, hidden: set[Cell]) -> bool:
        u, v = self.ends[cell]
        if u == v:  # a cell in no equation (a table without margins) is never determined
            return False
        adjacency: dict[int, list[int]] = {}
        for other in hidden:
            if other != cell:
                a, b = self.ends[other]
                adjacency.setdefault(a, []).append(b)
                adjacency.setdefault(b, []).append(a)
        seen, frontier = {u}, [u]
        while frontier:
            node = frontier.pop()
            for nxt in adjacency.get(node, []):
                if nxt == v:
                    return False
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        return True

    def _cheapest_path(self, bridge: Cell, hidden: set[Cell], cost: dict[Cell, float]) -> list[Cell]:
        """Cells of the cheapest path between the bridge's ends avoiding it (hidden cells cost nothing).

        One exists: every cell lies on a cycle of the whole table's graph (a margin equation has at least
        two terms, and a margin with a single part equals it, so both are withheld or neither).
        """
        start, goal = self.ends[bridge]
        adjacency: dict[int, list[Cell]] = {}
        for cell, (a, b) in self.ends.items():
            if cell != bridge and a != b:
                adjacency.setdefault(a, []).append(cell)
                adjacency.setdefault(b, []).append(cell)
        best = {start: 0.0}
        came: dict[int, Cell] = {}
        ticket = counter()
        queue = [(0.0, next(ticket), start)]
        while queue:
            distance, _, node = heapq.heappop(queue)
            if node == goal:
                path = []
                while node != start:
                    cell = came[node]
                    path.append(cell)
                    a, b = self.ends[cell]
                    node = a if b == node else b
                return path
            if distance > best.get(node, math.inf):
                continue
            for cell in adjacency.get(node, []):
                a, b = self.ends[cell]
                nxt = b if a == node else a
                step = 0.0 if cell in hidden else cost[cell]
                if distance + step < best.get(nxt, math.inf):
                    best[nxt] = distance + step
                    came[nxt] = cell
                    heapq.heappush(queue, (distance + step, next(ticket), nxt))
        raise AssertionError(f"no cycle through cell {bridge!r}; the margins were checked, so this is a bug")
