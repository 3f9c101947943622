"""The Python reference of every measure of model/xero.model.yml, proven by test_model.py.

It lives in the Power BI sandbox (`sandbox.powerbi.measures`), whose viewer computes every
visual with it; the tests use the same functions, re-exported here.
"""

from __future__ import annotations

from sandbox.powerbi.measures import (
    ACCRUAL,
    CURRENT_ASSET_TYPES,
    INCOME_TYPES,
    MONTHLY,
    PAYMENTS_IN,
    POSTED,
    PREPAYMENT_STATUSES,
    REFERENCES,
    TILES,
    TOP_EXPENSES,
    Model,
    Rows,
    add_months,
    cents,
    day,
    divide,
    month_end,
    month_start,
)

__all__ = [
    "ACCRUAL",
    "CURRENT_ASSET_TYPES",
    "INCOME_TYPES",
    "MONTHLY",
    "PAYMENTS_IN",
    "POSTED",
    "PREPAYMENT_STATUSES",
    "REFERENCES",
    "TILES",
    "TOP_EXPENSES",
    "Model",
    "Rows",
    "add_months",
    "cents",
    "day",
    "divide",
    "month_end",
    "month_start",
]
