"""flame_sdk.disclosure: small-cell and complementary suppression, rounding, contributing nodes.

The property tests check every suppression pattern with linear algebra written here, independently of the
module: a withheld cell is safe when the unit vector of that cell is not in the row space of the margin
equations restricted to the withheld cells (it is then not a combination of shown numbers), and, with
scipy's LP solver, when its feasible range given the shown cells and non-negativity is wider than a point.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from flame_sdk.disclosure import (
    COMPLEMENTARY,
    FEW_NODES,
    SMALL,
    DisclosureConfig,
    DisclosureError,
    check_contributing_nodes,
    check_count,
    contributing_nodes,
    derivable_cells,
    protect_table,
    publish_count,
    round_count,
)

M = "all"


def with_margins(inner: pd.DataFrame, rows: bool = True, columns: bool = True) -> pd.DataFrame:
    table = inner.copy()
    if columns:
        table[M] = table.sum(axis=1)
    if rows:
        table.loc[M] = table.sum(axis=0)
    return table


def equations(table: pd.DataFrame) -> tuple[list[tuple], np.ndarray]:
    """All margin equations of the table as a matrix over its cells (written independently of the module)."""
    cells = [(r, c) for r in table.index for c in table.columns]
    position = {cell: i for i, cell in enumerate(cells)}
    rows = []
    if M in table.columns:
        for r in table.index:
            row = np.zeros(len(cells))
            for c in table.columns:
                row[position[(r, c)]] = -1.0 if c == M else 1.0
            rows.append(row)
    if M in table.index:
        for c in table.columns:
            row = np.zeros(len(cells))
            for r in table.index:
                row[position[(r, c)]] = -1.0 if r == M else 1.0
            rows.append(row)
    return cells, np.array(rows).reshape(len(rows), len(cells))


def determined(table: pd.DataFrame, withheld: set) -> list:
    """Withheld cells that are a linear combination of shown values (rank test)."""
    cells, matrix = equations(table)
    hidden = [i for i, cell in enumerate(cells) if cell in withheld]
    sub = matrix[:, hidden] if len(matrix) else np.zeros((0, len(hidden)))
    rank = np.linalg.matrix_rank(sub) if sub.size else 0
    out = []
    for j, i in enumerate(hidden):
        unit = np.zeros((1, len(hidden)))
        unit[0, j] = 1.0
        if (np.linalg.matrix_rank(np.vstack([sub, unit])) if sub.size else 1) == rank:
            out.append(cells[i])
    return out


def feasible_ranges(table: pd.DataFrame, withheld: set) -> dict:
    """(min, max) of each withheld cell over all non-negative tables that show the same numbers."""
    cells, matrix = equations(table)
    hidden = [i for i, cell in enumerate(cells) if cell in withheld]
    shown = [i for i, cell in enumerate(cells) if cell not in withheld]
    values = np.array([table.at[cell] for cell in cells], dtype=float)
    a_eq = matrix[:, hidden] if len(matrix) else None
    b_eq = -(matrix[:, shown] @ values[shown]) if len(matrix) else None
    ranges = {}
    for j, i in enumerate(hidden):
        objective = np.zeros(len(hidden))
        objective[j] = 1.0
        low = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        high = linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        ranges[cells[i]] = (low.fun if low.status == 0 else -np.inf, -high.fun if high.status == 0 else np.inf)
    return ranges


# ----------------------------------------------------------------------------- the measured 2x2 leak
def test_the_measured_2x2_leak_is_closed():
    """female = [3, 50, 10, 100], male = [20, 60, 30, 120]: female 'a' must not equal all - male."""
    inner = pd.DataFrame([[3, 50, 10, 100], [20, 60, 30, 120]], index=["female", "male"], columns=list("abcd"))
    table = with_margins(inner, rows=True, columns=False)
    assert determined(table, {("female", "a")}) == [("female", "a")]  # the leak without complements

    protected = protect_table(table)
    withheld = set(protected.withheld_cells())
    assert protected.reasons.at["female", "a"] == SMALL
    assert ("female", "a") in withheld and len(withheld) == 2
    assert determined(table, withheld) == [] and derivable_cells(table, protected.withheld) == []
    low, high = feasible_ranges(table, withheld)[("female", "a")]
    assert (low, high) == (0, 23)  # anything from 0 to the column total
    assert protected.counts.at[M, "a"] == 23 and pd.isna(protected.counts.at["female", "a"])


def test_derivable_cells_finds_a_leak_in_a_two_way_table():
    inner = pd.DataFrame([[10, 12, 2], [9, 11, 8]], index=["f", "m"], columns=["young", "mid", "old"])
    table = with_margins(inner)
    leaky = pd.DataFrame(False, index=table.index, columns=table.columns)
    leaky.at["f", "old"] = True
    assert derivable_cells(table, leaky) == [("f", "old")]
    protected = protect_table(table)
    assert protected.reasons.at["f", "old"] == SMALL
    assert derivable_cells(table, protected.withheld) == []
    assert (protected.reasons == COMPLEMENTARY).sum().sum() == 3  # the cheapest rectangle: f/m x old/young


def test_a_bridge_between_two_cycles_is_closed():
    """Min-degree >= 2 is not enough: two withheld rectangles joined by one cell leave that cell derivable."""
    inner = pd.DataFrame(50, index=list("pqrs"), columns=list("wxyz"))
    table = with_margins(inner)
    pattern = {("p", "w"), ("p", "x"), ("q", "w"), ("q", "x"), ("r", "y"), ("r", "z"), ("s", "y"), ("s", "z"),
               ("q", "y")}
    assert determined(table, pattern) == [("q", "y")]
    for cell in pattern:  # make exactly these cells primary
        inner.loc[cell] = 3
    table = with_margins(inner)
    protected = protect_table(table)
    assert {c for c in protected.withheld_cells() if protected.reasons.at[c] == SMALL} == pattern
    assert protected.withheld.to_numpy().sum() > len(pattern)
    assert determined(table, set(protected.withheld_cells())) == []


# ----------------------------------------------------------------------------- property tests
@st.composite
def tables(draw):
    rows = draw(st.integers(1, 5))
    columns = draw(st.integers(1, 5))
    value = st.one_of(st.integers(0, 6), st.integers(5, 80))
    inner = pd.DataFrame([[draw(value) for _ in range(columns)] for _ in range(rows)],
                         index=[f"r{i}" for i in range(rows)], columns=[f"c{j}" for j in range(columns)])
    margins = draw(st.sampled_from([(True, True), (True, False), (False, True), (False, False)]))
    return with_margins(inner, *margins)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), k=st.integers(2, 6), protect_zeros=st.booleans())
def test_no_withheld_cell_is_determined_by_the_shown_cells(table, k, protect_zeros):
    config = DisclosureConfig(min_cell_size=k, protect_zeros=protect_zeros)
    protected = protect_table(table, config)
    withheld = set(protected.withheld_cells())
    for cell in table.stack().index:
        value = table.at[cell]
        if 0 < value < k or (protect_zeros and value == 0):
            assert cell in withheld, f"small cell {cell}={value} shown"
    assert determined(table, withheld) == []
    assert derivable_cells(table, protected.withheld) == []
    if not protect_zeros:  # every primary cell can really take more than one value
        for cell, (low, high) in feasible_ranges(table, withheld).items():
            if protected.reasons.at[cell] == SMALL:
                assert high - low > 1e-9, f"{cell} pinned to {low}"
    shown = protected.counts.where(~protected.withheld)
    assert (shown.fillna(0) == table.where(~protected.withheld, 0)).all().all()


def test_a_margin_with_one_part_is_withheld_with_it():
    table = with_margins(pd.DataFrame([[3, 9]], index=["only"], columns=["x", "y"]), rows=True, columns=False)
    assert protect_table(table).withheld_cells() == [("only", "x"), (M, "x")]


# ----------------------------------------------------------------------------- rounding, nodes, config
def test_rounding_to_base_five_and_scalars():
    assert [round_count(v, 5) for v in (0, 2, 3, 7, 8, 12, 13)] == [0, 0, 5, 5, 10, 10, 15]
    assert round_count(15, 10) == 20 and round_count(14, 10) == 10 and round_count(9, 1) == 9
    config = DisclosureConfig(rounding_base=5)
    assert publish_count(3, config) is None and publish_count(0, config) == 0 and publish_count(23, config) == 25
    table = with_margins(pd.DataFrame([[21, 38], [17, 44]], index=["f", "m"], columns=["x", "y"]))
    protected = protect_table(table, config)
    assert protected.counts.loc["f"].tolist() == [20, 40, 60] and not protected.withheld.any().any()


def test_cells_from_too_few_nodes_are_withheld():
    node_a = pd.DataFrame([[10, 0], [7, 9]], index=["f", "m"], columns=["x", "y"])
    node_b = pd.DataFrame([[12, 8], [6, 11]], index=["f", "m"], columns=["x", "y"])
    table = with_margins(node_a + node_b, rows=True, columns=False)
    nodes = contributing_nodes([with_margins(t, rows=True, columns=False) for t in (node_a, node_b)])
    assert nodes.at["f", "y"] == 1 and nodes.at[M, "y"] == 2
    protected = protect_table(table, DisclosureConfig(min_contributing_nodes=2), contributors=nodes)
    assert protected.reasons.at["f", "y"] == FEW_NODES
    assert determined(table, set(protected.withheld_cells())) == []
    with pytest.raises(DisclosureError, match="only 1 node"):
        check_contributing_nodes(1, DisclosureConfig(min_contributing_nodes=2), "the fit")
    with pytest.raises(DisclosureError, match="events count is below min_cell_size=5"):
        check_count("events", 4, DisclosureConfig())


def test_config_from_text_and_bad_input():
    config = DisclosureConfig.from_mapping({"min_cell_size": "10", "rounding_base": 5, "protect_zeros": "true"})
    assert config == DisclosureConfig(min_cell_size=10, rounding_base=5, protect_zeros=True)
    with pytest.raises(DisclosureError, match="unknown disclosure setting"):
        DisclosureConfig.from_mapping({"min_size": 3})
    with pytest.raises(DisclosureError, match="at least 1"):
        DisclosureConfig(min_cell_size=0)
    with pytest.raises(DisclosureError, match="non-negative integers"):
        protect_table(pd.DataFrame({"x": [1.5]}))
    with pytest.raises(DisclosureError, match="not the sum of the other rows"):
        protect_table(pd.DataFrame({"x": [5, 6, 12]}, index=["a", "b", M]))
