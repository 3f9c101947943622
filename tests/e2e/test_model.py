"""The Xero model for Power BI, proved without a DAX engine.

tap-xero piped into target-powerbi (subprocesses) against both sandboxes, with
model/xero.model.yml: the Power BI sandbox must accept the dataset with every
relationship and measure, and the Python reference of every measure (metrics.py) over
the rows that landed in Power BI must equal the same metric computed from the Xero
sandbox's own reports and ledger.
"""

from __future__ import annotations

import importlib.util
import json
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


def _catalog(config: dict[str, Any]) -> dict[str, Any]:
    catalog = TapXero(config=config, validate_config=False).catalog_dict
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in MODEL_STREAMS
    return catalog


@pytest.fixture(scope="module")
def landed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model")
    xero = XeroSandbox(
        seed=5,
        size="small",
        tenants=2,
        time_scale=TIME_SCALE,
        access_token_lifetime=1800 * TIME_SCALE,
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
            ("catalog", _catalog(tap_config)),
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
        yield {"xero": xero, "dataset": dataset, "tables": tables}
    finally:
        powerbi.stop()
        xero.stop()


def test_dataset_accepted_with_every_relationship_and_measure(landed):
    model = yaml.safe_load(MODEL.read_text())
    dataset = landed["dataset"]
    landed_rels = {
        (r["fromTable"], r["fromColumn"], r["toTable"], r["toColumn"])
        for r in dataset["relationships"]
    }
    for rel in model["relationships"]:
        assert (rel["fromTable"], rel["fromColumn"], rel["toTable"], rel["toColumn"]) in landed_rels
    tables = {t["name"]: t for t in dataset["tables"]}
    for name, spec in model["tables"].items():
        measures = {m["name"]: m["expression"] for m in tables[name].get("measures") or []}
        for measure in spec.get("measures") or []:
            assert measures.get(measure["name"]) == measure["expression"], (name, measure["name"])
        columns = {c["name"]: c["dataType"] for c in tables[name]["columns"]}
        for column, data_type in (spec.get("columns") or {}).items():
            assert columns[column] == data_type, (name, column)
    # Every table the model names holds rows; every relationship's key is unique.
    rows = landed["tables"]
    for rel in model["relationships"]:
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


def xero_metrics(
    sandbox: XeroSandbox, tenant: str, today: date, months: list[date], fy_start: date
) -> dict[str, Any]:
    """The same metrics from the Xero sandbox's own reports and ledger."""
    service = sandbox.service
    org = service.by_tenant[tenant]
    now = service.now_ms()
    iso = today.isoformat()
    money = metrics.cents
    out: dict[str, Any] = {"Cash In": {}, "Cash Out": {}, "Net Profit": {}}
    for m in months:
        end = (metrics.add_months(m, 1) - timedelta(days=1)).isoformat()
        bank = _values(_report(org, "BankSummary", now, fromDate=m.isoformat(), toDate=end))
        out["Cash In"][f"{m:%Y-%m}"] = money(bank["Total"][1])
        out["Cash Out"][f"{m:%Y-%m}"] = money(bank["Total"][2])
        pl = _values(_report(org, "ProfitAndLoss", now, fromDate=m.isoformat(), toDate=end))
        out["Net Profit"][f"{m:%Y-%m}"] = money(pl["Net Profit"][0])
    bank = _report(org, "BankSummary", now, fromDate=f"{today:%Y-%m}-01", toDate=iso)
    out["Closing Balance"] = {
        row["Cells"][0]["Value"]: money(row["Cells"][4]["Value"])
        for section in bank["Rows"]
        for row in section.get("Rows") or []
        if row["RowType"] == "Row"
    }
    daily: dict[date, int] = defaultdict(int)
    for journal in org.data["Journals"].values():
        for line in journal["JournalLines"]:
            if line["AccountType"] == "BANK":
                daily[date_of(int(journal["JournalDate"][6:-7]))] += money(line["NetAmount"])
    out["Daily Cash Flow"] = {d: v for d, v in daily.items() if v}
    # Customers and suppliers: the invoices as Xero holds them, and its aged reports.
    invoices = list(org.data["Invoices"].values())
    this_month = metrics.month_start(today)

    def invoiced(kind: str, start: date, end: date) -> int:
        return sum(
            money(i["SubTotal"])
            for i in invoices
            if i["Type"] == kind
            and i["Status"] in metrics.POSTED
            and start <= date_of(int(i["Date"][6:-7])) < end
        )

    for kind, label in (("ACCREC", "Invoiced Sales"), ("ACCPAY", "Billed Purchases")):
        last = invoiced(kind, metrics.add_months(this_month, -1), this_month)
        prior = invoiced(
            kind, metrics.add_months(this_month, -2), metrics.add_months(this_month, -1)
        )
        out[f"{label} Last Month"] = last
        out[f"{label} Growth"] = metrics.divide(last - prior, prior)
    for report_name, prefix in (
        (
            "AgedReceivablesByContact",
            ("Outstanding Receivables", "Invoices Due", "Overdue Receivables"),
        ),
        ("AgedPayablesByContact", ("Outstanding Payables", "Bills Due", "Overdue Payables")),
    ):
        outstanding = overdue = 0
        for contact in org.data["Contacts"]:
            aged = _report(org, report_name, now, contactId=contact, date=iso)
            for section in aged["Rows"]:
                for row in section.get("Rows") or []:
                    if row["RowType"] != "Row":
                        continue
                    due = money(row["Cells"][7]["Value"])
                    outstanding += due
                    if date.fromisoformat(row["Cells"][2]["Value"][:10]) < today:
                        overdue += due
        out[prefix[0]], out[prefix[1]], out[prefix[2]] = (
            outstanding,
            outstanding - overdue,
            overdue,
        )
    items = {i["Code"]: i["Name"] for i in org.data["Items"].values()}
    by_product: dict[tuple[str, str], int] = defaultdict(int)
    for invoice in invoices:
        if invoice["Type"] == "ACCREC" and invoice["Status"] in metrics.POSTED:
            month = f"{date_of(int(invoice['Date'][6:-7])):%Y-%m}"
            for line in invoice["LineItems"]:
                name = items.get(line.get("ItemCode") or "", "")
                by_product[(name, month)] += money(line["LineAmount"])
    out["Sales by Product"] = dict(by_product)
    # Profit and loss, balance sheet and health from Xero's reports.
    fy = _report(org, "ProfitAndLoss", now, fromDate=fy_start.isoformat(), toDate=iso)
    fy_values = _values(fy)
    out["Net Profit This Financial Year"] = money(fy_values["Net Profit"][0])
    month = _values(_report(org, "ProfitAndLoss", now, fromDate=f"{today:%Y-%m}-01", toDate=iso))
    out["Net Profit This Month"] = money(month["Net Profit"][0])
    expenses = [
        (row["Cells"][0]["Value"], money(row["Cells"][1]["Value"]))
        for section in fy["Rows"]
        if section.get("Title") in ("Less Cost of Sales", "Less Operating Expenses")
        for row in section["Rows"]
        if row["RowType"] == "Row" and money(row["Cells"][1]["Value"])
    ]
    out["Top Expense Accounts"] = sorted(expenses, key=lambda x: (-x[1], x[0]))[
        : metrics.TOP_EXPENSES
    ]
    bs = _values(_report(org, "BalanceSheet", now, date=iso))
    assets, liabilities = money(bs["Total Assets"][0]), money(bs["Total Liabilities"][0])
    equity = money(bs["Total Equity"][0])
    assert equity == money(bs["Net Assets"][0])
    out["Total Assets"], out["Total Liabilities"], out["Total Equity"] = assets, liabilities, equity
    current_assets = money(bs["Total Bank"][0]) + money(bs["Total Current Assets"][0])
    out["Current Ratio"] = metrics.divide(current_assets, money(bs["Total Current Liabilities"][0]))
    income = money(fy_values["Total Income"][0])
    out["Gross Profit Percentage"] = metrics.divide(money(fy_values["Gross Profit"][0]), income)
    out["Return on Total Assets"] = metrics.divide(out["Net Profit This Financial Year"], assets)
    out["Liabilities to Equity"] = metrics.divide(liabilities, equity)
    sales_365 = invoiced("ACCREC", today - timedelta(days=364), today + timedelta(days=1))
    ratio = metrics.divide(out["Outstanding Receivables"], sales_365)
    out["Debtor Days"] = None if ratio is None else ratio * 365
    return out


def test_every_measure_equals_xero_reports_and_ledger(landed):
    xero: XeroSandbox = landed["xero"]
    today = date_of(xero.service.now_ms())
    months = [metrics.add_months(metrics.month_start(today), -k) for k in range(12)]
    model = yaml.safe_load(MODEL.read_text())
    measured: set[str] = set()
    for tenant in xero.config["tenant_ids"]:
        reference = metrics.Model(landed["tables"], tenant, today)
        ours = reference.all(months)
        theirs = xero_metrics(xero, tenant, today, months, reference.fy_start)
        assert set(ours) == set(theirs)
        for name, value in ours.items():
            expected = theirs[name]
            if isinstance(value, float) or isinstance(expected, float):
                assert value == pytest.approx(expected, rel=1e-9), (tenant, name)
            else:
                assert value == expected, (tenant, name)
        # Sanity: the data is rich enough that these comparisons mean something.
        assert ours["Total Assets"] and ours["Outstanding Receivables"] and ours["Overdue Payables"]
        assert any(ours["Net Profit"].values()) and len(ours["Top Expense Accounts"]) == 5
        assert ours["Sales by Product"] and ours["Invoiced Sales Growth"] is not None
        measured |= set(ours)
    # Every tile named by the issue has a measure in the model file.
    declared = {m["name"] for spec in model["tables"].values() for m in spec.get("measures") or []}
    tiles = measured - {"Top Expense Accounts"} | {"Top Expense Account Rank"}
    assert tiles <= declared
