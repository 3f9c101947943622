"""Python reference implementation of every measure of model/xero.model.yml.

Each function mirrors one DAX measure over the rows that landed in Power BI, with the
model's relationships as the filter paths: journal lines belong to an organisation
through their journal, invoice lines through their invoice. Money is in integer cents
(Power BI holds these columns as Decimal), ratios as floats. `today` plays DAX's TODAY().
See docs/xero-model.md for the meaning of each measure.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any

Rows = list[dict[str, Any]]
CURRENT_ASSET_TYPES = ("BANK", "CURRENT", "INVENTORY", "PREPAYMENT")
INCOME_TYPES = ("REVENUE", "SALES")
POSTED = ("AUTHORISED", "PAID")
TOP_EXPENSES = 5


def cents(value: Any) -> int:
    return round(float(value or 0) * 100)


def day(value: Any) -> date:
    return date.fromisoformat(str(value)[:10])


def month_start(d: date) -> date:
    return date(d.year, d.month, 1)


def add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def financial_year_start(end_month: int, today: date) -> date:
    """The measure `Financial Year Start`: the month after FinancialYearEndMonth."""
    start_month = end_month % 12 + 1
    return date(today.year - (today.month < start_month), start_month, 1)


def divide(numerator: float, denominator: float) -> float | None:
    """DAX DIVIDE: blank (None) when the denominator is zero."""
    return numerator / denominator if denominator else None


class Model:
    """The landed tables of one organisation, joined as the model's relationships join."""

    def __init__(self, tables: dict[str, Rows], tenant: str, today: date) -> None:
        self.today = today
        (self.organisation,) = [r for r in tables["organisations"] if r["tenant_id"] == tenant]
        self.accounts = {r["AccountID"]: r for r in tables["accounts"]}
        self.items = {r["item_key"]: r for r in tables["items"]}
        journals = {r["JournalID"]: day(r["JournalDate"]) for r in tables["journals"]}
        tenant_journals = {r["JournalID"] for r in tables["journals"] if r["tenant_id"] == tenant}
        # journal_lines -> journals -> organisations; journal_lines -> accounts
        self.lines = [
            (journals[r["JournalID"]], cents(r["NetAmount"]), r, self.accounts[r["AccountID"]])
            for r in tables["journal_lines"]
            if r["JournalID"] in tenant_journals
        ]
        self.invoices = [r for r in tables["invoices"] if r["tenant_id"] == tenant]
        ids = {r["InvoiceID"]: r for r in self.invoices}
        self.invoice_lines = [
            (ids[r["InvoiceID"]], r) for r in tables["invoice_line_items"] if r["InvoiceID"] in ids
        ]
        self.fy_start = financial_year_start(int(self.organisation["FinancialYearEndMonth"]), today)

    # ---- journal-line measures ------------------------------------------------------

    def _sum(self, *, start: date | None = None, end: date | None = None, **where: Any) -> int:
        """SUM(journal_lines[NetAmount]) with journals[JournalDate] in [start, end]."""
        total = 0
        for when, amount, line, account in self.lines:
            if start is not None and when < start:
                continue
            if end is not None and when > end:
                continue
            if "line_type" in where and line["AccountType"] not in where["line_type"]:
                continue
            if "account_class" in where and account["Class"] not in where["account_class"]:
                continue
            if "account_type" in where and account["Type"] not in where["account_type"]:
                continue
            if "sign" in where and (amount > 0) != (where["sign"] > 0):
                continue
            total += amount
        return total

    def cash_in(self, start: date, end: date) -> int:
        return self._sum(start=start, end=end, line_type=("BANK",), sign=1)

    def cash_out(self, start: date, end: date) -> int:
        return -self._sum(start=start, end=end, line_type=("BANK",), sign=-1)

    def daily_cash_flow(self) -> dict[date, int]:
        out: dict[date, int] = defaultdict(int)
        for when, amount, line, _account in self.lines:
            if line["AccountType"] == "BANK":
                out[when] += amount
        return {d: v for d, v in out.items() if v}

    def closing_balance_by_account(self, at: date) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for when, amount, line, account in self.lines:
            if line["AccountType"] == "BANK" and when <= at:
                out[account["Name"]] += amount
        return dict(out)

    def net_profit(self, start: date | None, end: date | None) -> int:
        return -self._sum(start=start, end=end, account_class=("REVENUE", "EXPENSE"))

    def net_profit_by_month(self, months: list[date]) -> dict[str, int]:
        return {
            f"{m:%Y-%m}": self.net_profit(m, add_months(m, 1) - timedelta(days=1)) for m in months
        }

    def net_profit_this_financial_year(self) -> int:
        return self.net_profit(self.fy_start, self.today)

    def net_profit_this_month(self) -> int:
        return self.net_profit(month_start(self.today), self.today)

    def top_expense_accounts(self) -> list[tuple[str, int]]:
        by_account: dict[str, int] = defaultdict(int)
        for when, amount, _line, account in self.lines:
            if account["Class"] == "EXPENSE" and self.fy_start <= when <= self.today:
                by_account[account["Name"]] += amount
        ranked = sorted(((n, v) for n, v in by_account.items() if v), key=lambda x: (-x[1], x[0]))
        return ranked[:TOP_EXPENSES]

    def total_assets(self) -> int:
        return self._sum(end=self.today, account_class=("ASSET",))

    def total_liabilities(self) -> int:
        return -self._sum(end=self.today, account_class=("LIABILITY",))

    def total_equity(self) -> int:
        return self.total_assets() - self.total_liabilities()

    def current_ratio(self) -> float | None:
        assets = self._sum(end=self.today, account_type=CURRENT_ASSET_TYPES)
        liabilities = -self._sum(end=self.today, account_type=("CURRLIAB",))
        return divide(assets, liabilities)

    def gross_profit_percentage(self) -> float | None:
        income = -self._sum(start=self.fy_start, end=self.today, account_type=INCOME_TYPES)
        costs = self._sum(start=self.fy_start, end=self.today, account_type=("DIRECTCOSTS",))
        return divide(income - costs, income)

    def return_on_total_assets(self) -> float | None:
        return divide(self.net_profit_this_financial_year(), self.total_assets())

    def liabilities_to_equity(self) -> float | None:
        return divide(self.total_liabilities(), self.total_equity())

    # ---- invoice measures -----------------------------------------------------------

    def _invoiced(self, kind: str, start: date, end: date) -> int:
        """SUM(invoices[SubTotal]) of posted invoices of `kind` dated in [start, end)."""
        return sum(
            cents(r["SubTotal"])
            for r in self.invoices
            if r["Type"] == kind and r["Status"] in POSTED and start <= day(r["Date"]) < end
        )

    def _last_month_and_growth(self, kind: str) -> tuple[int, float | None]:
        this = month_start(self.today)
        last = self._invoiced(kind, add_months(this, -1), this)
        prior = self._invoiced(kind, add_months(this, -2), add_months(this, -1))
        return last, divide(last - prior, prior)

    def _due(self, kind: str) -> tuple[int, int, int]:
        """(outstanding, due, overdue) AmountDue of AUTHORISED invoices of `kind`."""
        outstanding = due = overdue = 0
        for r in self.invoices:
            if r["Type"] == kind and r["Status"] == "AUTHORISED":
                amount = cents(r["AmountDue"])
                outstanding += amount
                if day(r["DueDate"]) >= self.today:
                    due += amount
                else:
                    overdue += amount
        return outstanding, due, overdue

    def invoiced_sales_last_365_days(self) -> int:
        return self._invoiced(
            "ACCREC", self.today - timedelta(days=364), self.today + timedelta(days=1)
        )

    def debtor_days(self) -> float | None:
        ratio = divide(self._due("ACCREC")[0], self.invoiced_sales_last_365_days())
        return None if ratio is None else ratio * 365

    def sales_by_product(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = defaultdict(int)
        for invoice, line in self.invoice_lines:
            if invoice["Type"] != "ACCREC" or invoice["Status"] not in POSTED:
                continue
            item = self.items.get(line.get("item_key") or "")
            name = item["Name"] if item else ""
            out[(name, f"{day(invoice['Date']):%Y-%m}")] += cents(line["LineAmount"])
        return dict(out)

    # ---- every measure ----------------------------------------------------------------

    def all(self, months: list[date]) -> dict[str, Any]:
        """Every measure (by month where the tile is monthly)."""
        sales_last, sales_growth = self._last_month_and_growth("ACCREC")
        bills_last, bills_growth = self._last_month_and_growth("ACCPAY")
        receivable = self._due("ACCREC")
        payable = self._due("ACCPAY")
        spans = [(m, add_months(m, 1) - timedelta(days=1)) for m in months]
        return {
            "Cash In": {f"{m:%Y-%m}": self.cash_in(m, e) for m, e in spans},
            "Cash Out": {f"{m:%Y-%m}": self.cash_out(m, e) for m, e in spans},
            "Daily Cash Flow": self.daily_cash_flow(),
            "Closing Balance": self.closing_balance_by_account(self.today),
            "Invoiced Sales Last Month": sales_last,
            "Invoiced Sales Growth": sales_growth,
            "Outstanding Receivables": receivable[0],
            "Invoices Due": receivable[1],
            "Overdue Receivables": receivable[2],
            "Billed Purchases Last Month": bills_last,
            "Billed Purchases Growth": bills_growth,
            "Outstanding Payables": payable[0],
            "Bills Due": payable[1],
            "Overdue Payables": payable[2],
            "Sales by Product": self.sales_by_product(),
            "Net Profit": self.net_profit_by_month(months),
            "Net Profit This Financial Year": self.net_profit_this_financial_year(),
            "Net Profit This Month": self.net_profit_this_month(),
            "Top Expense Accounts": self.top_expense_accounts(),
            "Total Assets": self.total_assets(),
            "Total Liabilities": self.total_liabilities(),
            "Total Equity": self.total_equity(),
            "Current Ratio": self.current_ratio(),
            "Gross Profit Percentage": self.gross_profit_percentage(),
            "Return on Total Assets": self.return_on_total_assets(),
            "Liabilities to Equity": self.liabilities_to_equity(),
            "Debtor Days": self.debtor_days(),
        }
