"""The Xero model for Power BI, proved without a DAX engine, on every Xero app tier.

tap-xero piped into target-powerbi (subprocesses) against both sandboxes, with
model/xero.model.yml, once as a Starter app (no journals: GET /Journals needs the
Advanced tier) and once as an Advanced one: the Power BI sandbox must accept the dataset
with every measure (and every relationship whose tables it holds), and the Python
reference of every measure (metrics.py) over the rows that landed in Power BI must
equal the same metric computed from the Xero sandbox's own reports and ledger.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
import yaml
from sandbox.powerbi import PowerBISandbox
from sandbox.xero import XeroSandbox
from sandbox.xero import reports as xero_reports
from sandbox.xero.util import date_of
from tap_xero.tap import TapXero

ROOT = Path(__file__).resolve().parents[2]


def _load_metrics() -> ModuleType:
    """tests/e2e/metrics.py, whether or not tests/e2e is a package."""
    spec = importlib.util.spec_from_file_location(
        "xero_model_metrics", Path(__file__).parent / "metrics.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


metrics = _load_metrics()
MODEL = ROOT / "model" / "xero.model.yml"
BIN = Path(sys.executable).parent
TIME_SCALE = 60.0
MODEL_STREAMS = {
    "organisations",
    "accounts",
    "contacts",
    "items",
    "invoices",
    "invoice_line_items",
    "payments",
    "journals",
    "journal_lines",
    "bank_transactions",
    "prepayments",
    "overpayments",
    "expense_claims",
    "manual_journals",
    "manual_journal_lines",
    "profit_and_loss",
    "balance_sheet",
    "trial_balance",
    "bank_summary",
    "executive_summary",
    "budget_summary",
}
# The tap configuration the model needs (docs/xero-model.md): payments embed whole copies
# of other documents (only the invoice id is needed), and items join lines by code.
# One place: the stream maps target-powerbi gets from the Meltano project.
_PROJECT = yaml.safe_load((ROOT / "meltano.yml").read_text())
STREAM_MAPS = next(
    p["config"]["stream_maps"]
    for p in _PROJECT["plugins"]["loaders"]
    if p["name"] == "target-powerbi"
)


# The streams a connection below the Advanced tier cannot read (GET /Journals).
JOURNAL_STREAMS = frozenset({"journals", "journal_lines", "cash_journals"})
TIERS = ("starter", "advanced")


def tier_run(tier: str) -> tuple[dict[str, Any], set[str]]:
    """(XeroSandbox options, selected streams) of a run as an app on `tier`.

    The sandbox cannot emulate tiers yet, so Starter is simulated by deselecting the
    journal streams, which is all a Starter connection loses for the model. Once
    `XeroSandbox(tier=...)` exists, the one line below becomes
    `return {"tier": tier}, MODEL_STREAMS` (the tap then skips the journals itself).
    """
    advanced = {"tier": "advanced", "scopes": "broad"}
    return advanced, MODEL_STREAMS - (JOURNAL_STREAMS if tier == "starter" else set())


def _catalog(config: dict[str, Any], selected: set[str]) -> dict[str, Any]:
    catalog = TapXero(config=config, validate_config=False).catalog_dict
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in selected
    return catalog


@pytest.fixture(scope="module", params=TIERS)
def landed(request, tmp_path_factory):
    tier = request.param
    options, selected = tier_run(tier)
    tmp = tmp_path_factory.mktemp(f"model-{tier}")
    xero = XeroSandbox(
        seed=5,
        size="small",
        tenants=2,
        time_scale=TIME_SCALE,
        access_token_lifetime=1800 * TIME_SCALE,
        **options,
    ).start()
    powerbi = PowerBISandbox(time_scale=TIME_SCALE).start()
    try:
        tap_config = {
            **xero.config,
            "token_store_path": str(tmp / "tokens.json"),
            "rate_limit_window_seconds": 60.0 / TIME_SCALE,
            "retry_backoff_seconds": 0.05,
        }
        target_config = {
            **powerbi.config,
            "stream_maps": STREAM_MAPS,
            "dataset_name": "Xero",
            "store_path": str(tmp / "store.sqlite3"),
            "model_file": str(MODEL),
            "child_tables": [],
        }
        paths = {}
        for name, body in (
            ("tap", tap_config),
            ("catalog", _catalog(tap_config, selected)),
            ("target", target_config),
        ):
            paths[name] = tmp / f"{name}.json"
            paths[name].write_text(json.dumps(body))
        with (tmp / "tap.log").open("w") as tap_log, (tmp / "target.log").open("w") as log:
            tap = subprocess.Popen(
                [BIN / "tap-xero", "--config", paths["tap"], "--catalog", paths["catalog"]],
                stdout=subprocess.PIPE,
                stderr=tap_log,
            )
            target = subprocess.run(
                [BIN / "target-powerbi", "--config", paths["target"]],
                stdin=tap.stdout,
                stdout=subprocess.DEVNULL,
                stderr=log,
                timeout=120,
                check=False,
            )
            assert tap.stdout is not None
            tap.stdout.close()
            assert tap.wait(timeout=30) == 0, (tmp / "tap.log").read_text()[-3000:]
        assert target.returncode == 0, (tmp / "target.log").read_text()[-3000:]
        http = requests.Session()
        http.trust_env = False
        http.verify = powerbi.ca_bundle

        def get(path: str) -> Any:
            response = http.get(f"{powerbi.url}/_sandbox/{path}", timeout=30)
            response.raise_for_status()
            return response.json()

        (dataset,) = [d for d in get("datasets")["datasets"] if d["name"] == "Xero"]
        tables = {
            t["name"]: get(f"datasets/{dataset['id']}/tables/{t['name']}/rows")["rows"]
            for t in dataset["tables"]
        }
        yield {
            "tier": tier,
            "xero": xero,
            "dataset": dataset,
            "tables": tables,
            "target_log": (tmp / "target.log").read_text(),
        }
    finally:
        powerbi.stop()
        xero.stop()


def _dax_tables(expression: str) -> set[str]:
    """The tables a DAX expression names (`table[column]`)."""
    return set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\[", expression))


def test_dataset_accepted_with_every_relationship_and_measure(landed):
    model = yaml.safe_load(MODEL.read_text())
    dataset = landed["dataset"]
    tables = {t["name"]: t for t in dataset["tables"]}
    # Starter has no journal tables, Advanced has them: the same model loads on both.
    journal_tables = {"journals", "journal_lines"} & set(tables)
    assert journal_tables == (
        set() if landed["tier"] == "starter" else {"journals", "journal_lines"}
    )
    landed_rels = {
        (r["fromTable"], r["fromColumn"], r["toTable"], r["toColumn"])
        for r in dataset["relationships"]
    }
    for rel in model["relationships"]:
        key = (rel["fromTable"], rel["fromColumn"], rel["toTable"], rel["toColumn"])
        present = rel["fromTable"] in tables and rel["toTable"] in tables
        assert (key in landed_rels) == present, (landed["tier"], rel["name"])
        if not present:
            assert rel["name"] in landed["target_log"], rel["name"]  # skipped, with a warning
    # Every measure of the model lands, on every tier, and names only tables that landed.
    for name, spec in model["tables"].items():
        if name not in tables:
            assert not spec.get("measures"), f"{name} is missing on {landed['tier']}"
            continue
        measures = {m["name"]: m["expression"] for m in tables[name].get("measures") or []}
        for measure in spec.get("measures") or []:
            assert measures.get(measure["name"]) == measure["expression"], (name, measure["name"])
            assert _dax_tables(measure["expression"]) <= set(tables), measure["name"]
        columns = {c["name"]: c["dataType"] for c in tables[name]["columns"]}
        for column, data_type in (spec.get("columns") or {}).items():
            assert columns[column] == data_type, (name, column)
    # Every table the model relates holds rows; every relationship's key is unique.
    rows = landed["tables"]
    for rel in model["relationships"]:
        if rel["fromTable"] not in rows or rel["toTable"] not in rows:
            continue
        assert rows[rel["fromTable"]], rel["fromTable"]
        keys = [r[rel["toColumn"]] for r in rows[rel["toTable"]]]
        assert len(keys) == len(set(keys)), f"{rel['toTable']}.{rel['toColumn']} is not unique"
        matched = [r for r in rows[rel["fromTable"]] if r[rel["fromColumn"]] in set(keys)]
        assert matched, rel["name"]


# ---------------------------------------------------------------- the Xero side


def _report(org: Any, name: str, now_ms: int, **params: str) -> dict[str, Any]:
    report: dict[str, Any] = xero_reports.run(org, name, params, now_ms)
    return report


def _values(report: dict[str, Any]) -> dict[str, list[str]]:
    """Row label -> its cells, over every section (labels of the summary rows are unique)."""
    out: dict[str, list[str]] = {}
    for row in report["Rows"]:
        for inner in row.get("Rows") or []:
            out[inner["Cells"][0]["Value"]] = [c["Value"] for c in inner["Cells"][1:]]
    return out


def _rows(report: dict[str, Any], *sections: str) -> list[list[str]]:
    """Cells of the account rows (RowType Row) of the given sections (all when none)."""
    return [
        [c["Value"] for c in row["Cells"]]
        for section in report["Rows"]
        if not sections or section.get("Title") in sections
        for row in section.get("Rows") or []
        if row["RowType"] == "Row"
    ]


def _date(msdate: str) -> date:
    return date_of(int(msdate[6:-7]))


def xero_cash(org: Any, now: int, today: date, months: list[date]) -> dict[str, Any]:
    """Cash from Xero's BankSummary and the ledger's bank lines, day by day."""
    money = metrics.cents
    out: dict[str, Any] = {"Cash In": {}, "Cash Out": {}}
    for m in months:
        end = metrics.month_end(m).isoformat()
        bank = _values(_report(org, "BankSummary", now, fromDate=m.isoformat(), toDate=end))
        out["Cash In"][f"{m:%Y-%m}"] = money(bank["Total"][1])
        out["Cash Out"][f"{m:%Y-%m}"] = money(bank["Total"][2])
    bank = _report(org, "BankSummary", now, fromDate=f"{today:%Y-%m}-01", toDate=today.isoformat())
    out["Closing Balance"] = {cells[0]: money(cells[4]) for cells in _rows(bank)}
    out["Report Closing Bank Balance"] = money(_values(bank)["Total"][3])
    banks = {code for code, account in org.accounts.items() if account["Type"] == "BANK"}
    daily: dict[date, int] = defaultdict(int)
    for day_ms, code, net, _options in org.postings:  # the accrual ledger
        if code in banks:
            daily[date_of(day_ms)] += net
    out["Daily Cash Flow"] = {d: v for d, v in daily.items() if v}
    return out


def xero_invoiced(org: Any, today: date) -> dict[str, Any]:
    """Sales and purchases of last month and their growth, from the invoices Xero holds."""
    invoices = list(org.data["Invoices"].values())
    this_month = metrics.month_start(today)

    def invoiced(kind: str, start: date, end: date) -> int:
        return sum(
            metrics.cents(i["SubTotal"])
            for i in invoices
            if i["Type"] == kind
            and i["Status"] in metrics.POSTED
            and start <= _date(i["Date"]) < end
        )

    out: dict[str, Any] = {}
    for kind, label in (("ACCREC", "Invoiced Sales"), ("ACCPAY", "Billed Purchases")):
        last = invoiced(kind, metrics.add_months(this_month, -1), this_month)
        prior = invoiced(
            kind, metrics.add_months(this_month, -2), metrics.add_months(this_month, -1)
        )
        out[f"{label} Last Month"] = last
        out[f"{label} Growth"] = metrics.divide(last - prior, prior)
    out["sales_365"] = invoiced("ACCREC", today - timedelta(days=364), today + timedelta(days=1))
    return out


def xero_aged(org: Any, now: int, today: date) -> dict[str, Any]:
    """Receivables and payables from Xero's aged reports, contact by contact."""
    out: dict[str, Any] = {}
    for report_name, names in (
        (
            "AgedReceivablesByContact",
            ("Outstanding Receivables", "Invoices Due", "Overdue Receivables"),
        ),
        ("AgedPayablesByContact", ("Outstanding Payables", "Bills Due", "Overdue Payables")),
    ):
        outstanding = overdue = 0
        for contact in org.data["Contacts"]:
            aged = _report(org, report_name, now, contactId=contact, date=today.isoformat())
            for cells in _rows(aged):
                due = metrics.cents(cells[7])
                outstanding += due
                overdue += due if date.fromisoformat(cells[2][:10]) < today else 0
        out[names[0]], out[names[1]], out[names[2]] = outstanding, outstanding - overdue, overdue
    return out


def xero_sales_by_product(org: Any) -> dict[tuple[str, str], int]:
    items = {i["Code"]: i["Name"] for i in org.data["Items"].values()}
    out: dict[tuple[str, str], int] = defaultdict(int)
    for invoice in org.data["Invoices"].values():
        if invoice["Type"] == "ACCREC" and invoice["Status"] in metrics.POSTED:
            month = f"{_date(invoice['Date']):%Y-%m}"
            for line in invoice["LineItems"]:
                name = items.get(line.get("ItemCode") or "", "")
                out[(name, month)] += metrics.cents(line["LineAmount"])
    return dict(out)


def xero_profit(
    org: Any, now: int, today: date, months: list[date], fy_start: date
) -> dict[str, Any]:
    """Profit and loss from Xero's ProfitAndLoss report, month by month and year to date."""
    money = metrics.cents
    out: dict[str, Any] = {"Net Profit": {}}
    for m in months:
        end = metrics.month_end(m).isoformat()
        pl = _values(_report(org, "ProfitAndLoss", now, fromDate=m.isoformat(), toDate=end))
        out["Net Profit"][f"{m:%Y-%m}"] = money(pl["Net Profit"][0])
    out["Report Net Profit"] = out["Net Profit"]
    fy = _report(org, "ProfitAndLoss", now, fromDate=fy_start.isoformat(), toDate=today.isoformat())
    fy_values = _values(fy)
    out["Net Profit This Financial Year"] = money(fy_values["Net Profit"][0])
    month = _report(
        org, "ProfitAndLoss", now, fromDate=f"{today:%Y-%m}-01", toDate=today.isoformat()
    )
    out["Net Profit This Month"] = money(_values(month)["Net Profit"][0])
    expenses = [
        (cells[0], money(cells[1]))
        for cells in _rows(fy, "Less Cost of Sales", "Less Operating Expenses")
        if money(cells[1])
    ]
    ranked = sorted(expenses, key=lambda x: (-x[1], x[0]))
    out["Top Expense Account Rank"] = ranked[: metrics.TOP_EXPENSES]
    income = money(fy_values["Total Income"][0])
    out["Gross Profit Percentage"] = metrics.divide(money(fy_values["Gross Profit"][0]), income)
    return out


def xero_balance(org: Any, now: int, today: date) -> dict[str, Any]:
    """The balance sheet as at today, from Xero's BalanceSheet report."""
    money = metrics.cents
    bs = _values(_report(org, "BalanceSheet", now, date=today.isoformat()))
    assets, liabilities = money(bs["Total Assets"][0]), money(bs["Total Liabilities"][0])
    equity = money(bs["Total Equity"][0])
    assert equity == money(bs["Net Assets"][0])
    current_assets = money(bs["Total Bank"][0]) + money(bs["Total Current Assets"][0])
    return {
        "Total Assets": assets,
        "Total Liabilities": liabilities,
        "Total Equity": equity,
        "Current Ratio": metrics.divide(current_assets, money(bs["Total Current Liabilities"][0])),
        "Liabilities to Equity": metrics.divide(liabilities, equity),
    }


def xero_budget(org: Any, months: list[date]) -> dict[str, int]:
    """The overall budget by month, from the budgets Xero holds."""
    out = {f"{m:%Y-%m}": 0 for m in months}
    for budget in org.data["Budgets"].values():
        if budget["Type"] != "OVERALL":
            continue
        for line in budget["BudgetLines"]:
            for balance in line["BudgetBalances"]:
                month = f"{_date(balance['Period']):%Y-%m}"
                if month in out:
                    out[month] += metrics.cents(balance["Amount"])
    return out


def xero_metrics(
    sandbox: XeroSandbox, tenant: str, today: date, months: list[date], fy_start: date
) -> dict[str, Any]:
    """The same metrics from the Xero sandbox's own reports and ledger."""
    org = sandbox.service.by_tenant[tenant]
    now = sandbox.service.now_ms()
    out: dict[str, Any] = {
        **xero_cash(org, now, today, months),
        **xero_invoiced(org, today),
        **xero_aged(org, now, today),
        "Sales by Product": xero_sales_by_product(org),
        **xero_profit(org, now, today, months, fy_start),
        **xero_balance(org, now, today),
        "Budget": xero_budget(org, months),
    }
    out["Return on Total Assets"] = metrics.divide(
        out["Net Profit This Financial Year"], out["Total Assets"]
    )
    ratio = metrics.divide(out["Outstanding Receivables"], out.pop("sales_365"))
    out["Debtor Days"] = None if ratio is None else ratio * 365
    return out


def _ours(reference: Any, months: list[date]) -> dict[str, Any]:
    """Every tile, and the measures that show Xero's own figures, from the references."""
    out = reference.tiles(months)
    out["Report Net Profit"] = {
        f"{m:%Y-%m}": reference.report_net_profit(m, metrics.month_end(m)) for m in months
    }
    out["Report Closing Bank Balance"] = reference.report_closing_bank_balance(months[0])
    out["Budget"] = {f"{m:%Y-%m}": reference.budget(m, metrics.month_end(m)) for m in months}
    return out


def test_every_measure_equals_xero_reports_and_ledger(landed):
    xero: XeroSandbox = landed["xero"]
    today = date_of(xero.service.now_ms())
    months = [metrics.add_months(metrics.month_start(today), -k) for k in range(12)]
    for tenant in xero.config["tenant_ids"]:
        reference = metrics.Model(landed["tables"], tenant, today)
        ours = _ours(reference, months)
        theirs = xero_metrics(xero, tenant, today, months, reference.financial_year_start())
        assert set(ours) == set(theirs)
        for name, value in ours.items():
            expected = theirs[name]
            if isinstance(value, float) or isinstance(expected, float):
                assert value == pytest.approx(expected, rel=1e-9), (landed["tier"], tenant, name)
            else:
                assert value == expected, (landed["tier"], tenant, name)
        # Every tile has a value on every tier, and the data is rich enough that these
        # comparisons mean something.
        for name in metrics.TILES:
            assert ours[name] is not None and ours[name] != {}, (landed["tier"], name)
        assert ours["Total Assets"] and ours["Outstanding Receivables"] and ours["Overdue Payables"]
        assert any(ours["Net Profit"].values()) and any(ours["Cash Out"].values())
        assert len(ours["Top Expense Account Rank"]) == metrics.TOP_EXPENSES
        assert ours["Sales by Product"] and ours["Invoiced Sales Growth"] is not None
        assert len(ours["Daily Cash Flow"]) > 100 and any(ours["Budget"].values())


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice (safe_load keeps the last one silently)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        assert len(keys) == len(set(keys)), f"duplicate keys at line {node.start_mark.line + 1}"
        return super().construct_mapping(node, deep=deep)


def test_every_measure_has_its_reference():
    """One Python reference per DAX measure of the model file, and a measure per tile."""
    model = yaml.load(MODEL.read_text(), Loader=_UniqueKeyLoader)
    declared = {m["name"] for spec in model["tables"].values() for m in spec.get("measures") or []}
    assert declared == set(metrics.REFERENCES)
    for method in metrics.REFERENCES.values():
        assert callable(getattr(metrics.Model, method)), method
    assert set(metrics.TILES) <= declared
    # No measure needs the journals (Advanced tier only).
    for spec in model["tables"].values():
        for measure in spec.get("measures") or []:
            assert not _dax_tables(measure["expression"]) & JOURNAL_STREAMS, measure["name"]
