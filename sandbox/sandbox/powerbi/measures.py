"""Python reference implementation of every measure of model/xero.model.yml.

One method per DAX measure, named after it (`REFERENCES` maps each measure name to its
method), over the rows that landed in Power BI, with the model's relationships as the
filter paths: report rows and the cash documents belong to an organisation by
`tenant_id`, invoice lines and payments through their invoice, manual journal lines
through their journal; report rows and documents reach `accounts` by their account id.
No measure reads `journals` or `journal_lines`: a Starter connection cannot read them.
Money is in integer cents (Power BI holds these columns as Decimal), ratios as floats.
`today` plays DAX's TODAY(). See docs/xero-model.md for the meaning of each measure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from typing import Any

Rows = list[dict[str, Any]]
CURRENT_ASSET_TYPES = ("BANK", "CURRENT", "INVENTORY", "PREPAYMENT")
INCOME_TYPES = ("REVENUE", "SALES")
POSTED = ("AUTHORISED", "PAID")
TOP_EXPENSES = 5
ACCRUAL = "accrual"
# Payments that bring money into the bank account; every other PaymentType takes it out.
PAYMENTS_IN = ("ACCRECPAYMENT", "APCREDITPAYMENT", "APOVERPAYMENTPAYMENT", "APPREPAYMENTPAYMENT")
# Pre- and overpayments that are not voided moved money, allocated (PAID) or not.
PREPAYMENT_STATUSES = ("AUTHORISED", "PAID")


def cents(value: Any) -> int:
    return round(float(value or 0) * 100)


def day(value: Any) -> date:
    return date.fromisoformat(str(value)[:10])


def month_start(d: date) -> date:
    return date(d.year, d.month, 1)


def add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def month_end(d: date) -> date:
    return add_months(d, 1) - timedelta(days=1)


def divide(numerator: float, denominator: float) -> float | None:
    """DAX DIVIDE: blank (None) when the denominator is zero."""
    return numerator / denominator if denominator else None


def _by_day(pairs: Iterable[tuple[date, int]]) -> dict[date, int]:
    out: dict[date, int] = defaultdict(int)
    for when, amount in pairs:
        out[when] += amount
    return dict(out)


class Model:
    """The landed tables of one organisation, joined as the model's relationships join."""

    def __init__(self, tables: dict[str, Rows], tenant: str, today: date) -> None:
        self.today = today
        self.tables = tables
        self.tenant = tenant
        (self.organisation,) = [r for r in tables["organisations"] if r["tenant_id"] == tenant]
        self.accounts = {r["AccountID"]: r for r in tables["accounts"]}
        self.items = {r["item_key"]: r for r in tables["items"]}
        self.invoices = self._own("invoices")
        ids = {r["InvoiceID"]: r for r in self.invoices}
        self.invoice_lines = [
            (ids[r["InvoiceID"]], r) for r in tables["invoice_line_items"] if r["InvoiceID"] in ids
        ]
        # payments -> invoices -> organisations
        self.payments = [r for r in tables["payments"] if r["Invoice__InvoiceID"] in ids]

    def _own(self, table: str) -> Rows:
        """Rows of a table related to organisations by tenant_id."""
        return [r for r in self.tables[table] if r["tenant_id"] == self.tenant]

    def _account(self, account_id: Any) -> dict[str, Any]:
        """The related account (the blank row when there is none)."""
        return self.accounts.get(account_id) or {"Class": None, "Type": None, "Name": None}

    def _report(self, table: str, **where: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(row, account) of the organisation's accrual account rows of a report table:
        rows (not SummaryRows) that name an account, so no total is counted twice."""
        out = []
        for row in self._own(table):
            if row["basis"] != ACCRUAL or row["row_type"] != "Row" or not row["account_id"]:
                continue
            if any(row[column] != value for column, value in where.items()):
                continue
            out.append((row, self._account(row["account_id"])))
        return out

    @staticmethod
    def _in(row: dict[str, Any], start: date, end: date) -> bool:
        """The row's period starts in [start, end] (a month on a monthly axis)."""
        return start <= day(row["period_start"]) <= end

    # ---- cash (bank_summary; the cash documents for days) -----------------------------

    def bank_summary_amount(self, column: str, start: date, end: date) -> int:
        """`Bank Summary Amount`: the bank accounts' cells of one column, months in [start, end]."""
        return sum(
            cents(r["value"])
            for r, _ in self._report("bank_summary", column=column)
            if self._in(r, start, end)
        )

    def cash_in(self, start: date, end: date) -> int:
        """`Cash In`: the bank summary's Cash Received of the months in [start, end]."""
        return self.bank_summary_amount("Cash Received", start, end)

    def cash_out(self, start: date, end: date) -> int:
        """`Cash Out`: the bank summary's Cash Spent of the months in [start, end]."""
        return self.bank_summary_amount("Cash Spent", start, end)

    def closing_balance(self) -> dict[str, int]:
        """`Closing Balance` by accounts[Name]: each bank account at the latest month read."""
        rows = self._report("bank_summary", column="Closing Balance")
        if not rows:
            return {}
        last = max(day(r["period_end"]) for r, _ in rows)
        out: dict[str, int] = defaultdict(int)
        for r, account in rows:
            if day(r["period_end"]) == last:
                out[account["Name"]] += cents(r["value"])
        return dict(out)

    def report_closing_bank_balance(self, month: date) -> int:
        """`Report Closing Bank Balance` of one month: the bank summary's closing rows."""
        return sum(
            cents(r["value"])
            for r in self._own("bank_summary")
            if r["column"] == "Closing Balance"
            and r["row_type"] == "Row"
            and self._in(r, month, month)
        )

    def bank_transactions_net(self) -> dict[date, int]:
        """`Bank Transactions Net` by day: spend and receive money (transfers, pre- and
        overpayments are counted from their own tables)."""
        sign = {"RECEIVE": 1, "SPEND": -1}
        return _by_day(
            (day(r["Date"]), sign[r["Type"]] * cents(r["Total"]))
            for r in self._own("bank_transactions")
            if r["Status"] == "AUTHORISED" and r["Type"] in sign
        )

    def payments_net(self) -> dict[date, int]:
        """`Payments Net` by day: payments into or out of BANK accounts."""
        return _by_day(
            (
                day(r["Date"]),
                (1 if r["PaymentType"] in PAYMENTS_IN else -1) * cents(r["BankAmount"]),
            )
            for r in self.payments
            if r["Status"] == "AUTHORISED"
            and self._account(r["Account__AccountID"])["Type"] == "BANK"
        )

    def _prepaid(self, table: str) -> dict[date, int]:
        return _by_day(
            (day(r["Date"]), (1 if r["Type"].startswith("RECEIVE") else -1) * cents(r["Total"]))
            for r in self._own(table)
            if r["Status"] in PREPAYMENT_STATUSES
        )

    def prepayments_net(self) -> dict[date, int]:
        """`Prepayments Net` by day: money received (or paid) ahead of an invoice."""
        return self._prepaid("prepayments")

    def overpayments_net(self) -> dict[date, int]:
        """`Overpayments Net` by day: money received (or paid) beyond an invoice."""
        return self._prepaid("overpayments")

    def expense_claims_paid(self) -> dict[date, int]:
        """`Expense Claims Paid` by day: paid claims, money out on their reporting date."""
        return _by_day(
            (day(r["ReportingDate"]), -cents(r["AmountPaid"]))
            for r in self._own("expense_claims")
            if r["Status"] == "PAID"
        )

    def manual_journals_bank_net(self) -> dict[date, int]:
        """`Manual Journals Bank Net` by day: posted manual journal lines on BANK accounts."""
        journals = {
            r["ManualJournalID"]: r for r in self._own("manual_journals") if r["Status"] == "POSTED"
        }
        return _by_day(
            (day(journals[r["ManualJournalID"]]["Date"]), cents(r["LineAmount"]))
            for r in self.tables["manual_journal_lines"]
            if r["ManualJournalID"] in journals and self._account(r["AccountID"])["Type"] == "BANK"
        )

    def daily_cash_flow(self) -> dict[date, int]:
        """`Daily Cash Flow` by day: the sum of the six cash measures (days with money moved)."""
        out: dict[date, int] = defaultdict(int)
        for part in (
            self.bank_transactions_net(),
            self.payments_net(),
            self.prepayments_net(),
            self.overpayments_net(),
            self.expense_claims_paid(),
            self.manual_journals_bank_net(),
        ):
            for when, amount in part.items():
                out[when] += amount
        return {d: v for d, v in out.items() if v}

    # ---- profit and loss (profit_and_loss, accrual, monthly) --------------------------

    def profit_and_loss_amount(
        self, start: date, end: date, keep: Callable[[dict[str, Any]], bool]
    ) -> int:
        """`Profit and Loss Amount`: the P&L account rows of the months in [start, end],
        with `keep` the filter on their account (as CALCULATE puts one on accounts)."""
        return sum(
            cents(r["value"])
            for r, account in self._report("profit_and_loss")
            if self._in(r, start, end) and keep(account)
        )

    def financial_year_start(self) -> date:
        """`Financial Year Start`: the month after FinancialYearEndMonth."""
        start_month = int(self.organisation["FinancialYearEndMonth"]) % 12 + 1
        return date(self.today.year - (self.today.month < start_month), start_month, 1)

    def net_profit(self, start: date, end: date) -> int:
        """`Net Profit`: REVENUE-class rows less EXPENSE-class rows (Xero shows both positive)."""
        income = self.profit_and_loss_amount(start, end, lambda a: a["Class"] == "REVENUE")
        return income - self.profit_and_loss_amount(start, end, lambda a: a["Class"] == "EXPENSE")

    def net_profit_this_financial_year(self) -> int:
        return self.net_profit(self.financial_year_start(), self.today)

    def net_profit_this_month(self) -> int:
        return self.net_profit(month_start(self.today), self.today)

    def income(self, start: date, end: date) -> int:
        return self.profit_and_loss_amount(start, end, lambda a: a["Type"] in INCOME_TYPES)

    def direct_costs(self, start: date, end: date) -> int:
        return self.profit_and_loss_amount(start, end, lambda a: a["Type"] == "DIRECTCOSTS")

    def expenses(self, start: date, end: date) -> dict[str, int]:
        """`Expenses` by accounts[Name]: EXPENSE-class rows."""
        out: dict[str, int] = defaultdict(int)
        for r, account in self._report("profit_and_loss"):
            if account["Class"] == "EXPENSE" and self._in(r, start, end):
                out[account["Name"]] += cents(r["value"])
        return dict(out)

    def expenses_this_financial_year(self) -> dict[str, int]:
        return self.expenses(self.financial_year_start(), self.today)

    def top_expense_account_rank(self) -> list[tuple[str, int]]:
        """`Top Expense Account Rank` <= 5: the accounts ranked by this year's expenses."""
        spent = self.expenses_this_financial_year().items()
        ranked = sorted(((n, v) for n, v in spent if v), key=lambda x: (-x[1], x[0]))
        return ranked[:TOP_EXPENSES]

    def gross_profit_percentage(self) -> float | None:
        income = self.income(self.financial_year_start(), self.today)
        costs = self.direct_costs(self.financial_year_start(), self.today)
        return divide(income - costs, income)

    def report_net_profit(self, start: date, end: date) -> int:
        """`Report Net Profit`: Xero's own Net Profit row, months in [start, end]."""
        return sum(
            cents(r["value"])
            for r in self._own("profit_and_loss")
            if r["row_title"] == "Net Profit" and r["basis"] == ACCRUAL and self._in(r, start, end)
        )

    def budget(self, start: date, end: date) -> int:
        """`Budget`: the overall budget's account rows, months in [start, end]."""
        return sum(
            cents(r["value"]) for r, _ in self._report("budget_summary") if self._in(r, start, end)
        )

    # ---- balance sheet (balance_sheet, accrual, month ends) ---------------------------

    def balance_sheet_date(self) -> date | None:
        """`Balance Sheet Date`: the latest month end read, up to this month's end."""
        ends = [
            day(r["period_end"])
            for r, _ in self._report("balance_sheet")
            if day(r["period_end"]) <= month_end(self.today)
        ]
        return max(ends, default=None)

    def balance_sheet_amount(self, keep: Callable[[dict[str, Any]], bool]) -> int:
        """`Balance Sheet Amount`: the account rows at `Balance Sheet Date`, with `keep`
        the filter on their account."""
        at = self.balance_sheet_date()
        return sum(
            cents(r["value"])
            for r, account in self._report("balance_sheet")
            if day(r["period_end"]) == at and keep(account)
        )

    def total_assets(self) -> int:
        return self.balance_sheet_amount(lambda a: a["Class"] == "ASSET")

    def total_liabilities(self) -> int:
        return self.balance_sheet_amount(lambda a: a["Class"] == "LIABILITY")

    def total_equity(self) -> int:
        return self.total_assets() - self.total_liabilities()

    def current_assets(self) -> int:
        return self.balance_sheet_amount(lambda a: a["Type"] in CURRENT_ASSET_TYPES)

    def current_liabilities(self) -> int:
        return self.balance_sheet_amount(lambda a: a["Type"] == "CURRLIAB")

    def current_ratio(self) -> float | None:
        return divide(self.current_assets(), self.current_liabilities())

    def return_on_total_assets(self) -> float | None:
        return divide(self.net_profit_this_financial_year(), self.total_assets())

    def liabilities_to_equity(self) -> float | None:
        return divide(self.total_liabilities(), self.total_equity())

    # ---- invoices ---------------------------------------------------------------------

    def _invoiced(self, kind: str, start: date, end: date) -> int:
        """SUM(invoices[SubTotal]) of posted invoices of `kind` dated in [start, end)."""
        return sum(
            cents(r["SubTotal"])
            for r in self.invoices
            if r["Type"] == kind and r["Status"] in POSTED and start <= day(r["Date"]) < end
        )

    def invoiced_sales(self, start: date, end: date) -> int:
        """`Invoiced Sales`: SubTotal of posted ACCREC invoices dated in [start, end)."""
        return self._invoiced("ACCREC", start, end)

    def billed_purchases(self, start: date, end: date) -> int:
        """`Billed Purchases`: SubTotal of posted ACCPAY bills dated in [start, end)."""
        return self._invoiced("ACCPAY", start, end)

    def _last_month(self, kind: str) -> int:
        this = month_start(self.today)
        return self._invoiced(kind, add_months(this, -1), this)

    def _growth(self, kind: str) -> float | None:
        this = month_start(self.today)
        prior = self._invoiced(kind, add_months(this, -2), add_months(this, -1))
        return divide(self._last_month(kind) - prior, prior)

    def _due(self, kind: str, keep: Callable[[date], bool]) -> int:
        """AmountDue of AUTHORISED invoices of `kind` whose due date passes."""
        return sum(
            cents(r["AmountDue"])
            for r in self.invoices
            if r["Type"] == kind and r["Status"] == "AUTHORISED" and keep(day(r["DueDate"]))
        )

    def invoiced_sales_last_month(self) -> int:
        return self._last_month("ACCREC")

    def invoiced_sales_growth(self) -> float | None:
        return self._growth("ACCREC")

    def invoiced_sales_last_365_days(self) -> int:
        return self._invoiced(
            "ACCREC", self.today - timedelta(days=364), self.today + timedelta(days=1)
        )

    def outstanding_receivables(self) -> int:
        return self._due("ACCREC", lambda _due: True)

    def invoices_due(self) -> int:
        return self._due("ACCREC", lambda due: due >= self.today)

    def overdue_receivables(self) -> int:
        return self._due("ACCREC", lambda due: due < self.today)

    def debtor_days(self) -> float | None:
        ratio = divide(self.outstanding_receivables(), self.invoiced_sales_last_365_days())
        return None if ratio is None else ratio * 365

    def billed_purchases_last_month(self) -> int:
        return self._last_month("ACCPAY")

    def billed_purchases_growth(self) -> float | None:
        return self._growth("ACCPAY")

    def outstanding_payables(self) -> int:
        return self._due("ACCPAY", lambda _due: True)

    def bills_due(self) -> int:
        return self._due("ACCPAY", lambda due: due >= self.today)

    def overdue_payables(self) -> int:
        return self._due("ACCPAY", lambda due: due < self.today)

    def sales_by_product(self) -> dict[tuple[str, str], int]:
        """`Sales by Product` by items[Name] and month of invoices[Date]."""
        out: dict[tuple[str, str], int] = defaultdict(int)
        for invoice, line in self.invoice_lines:
            if invoice["Type"] != "ACCREC" or invoice["Status"] not in POSTED:
                continue
            item = self.items.get(line.get("item_key") or "")
            name = item["Name"] if item else ""
            out[(name, f"{day(invoice['Date']):%Y-%m}")] += cents(line["LineAmount"])
        return dict(out)

    # ---- the tiles --------------------------------------------------------------------

    def tiles(self, months: list[date]) -> dict[str, Any]:
        """The value of each tile of the content pack (by month where the tile is monthly)."""
        out: dict[str, Any] = {
            name: getattr(self, method)() for name, method in TILES.items() if name not in MONTHLY
        }
        for name in MONTHLY:
            measure = getattr(self, TILES[name])
            out[name] = {f"{m:%Y-%m}": measure(m, month_end(m)) for m in months}
        return out


# Every measure of the model file -> the method that is its reference.
REFERENCES: dict[str, str] = {
    "Bank Summary Amount": "bank_summary_amount",
    "Cash In": "cash_in",
    "Cash Out": "cash_out",
    "Closing Balance": "closing_balance",
    "Report Closing Bank Balance": "report_closing_bank_balance",
    "Bank Transactions Net": "bank_transactions_net",
    "Payments Net": "payments_net",
    "Prepayments Net": "prepayments_net",
    "Overpayments Net": "overpayments_net",
    "Expense Claims Paid": "expense_claims_paid",
    "Manual Journals Bank Net": "manual_journals_bank_net",
    "Daily Cash Flow": "daily_cash_flow",
    "Profit and Loss Amount": "profit_and_loss_amount",
    "Financial Year Start": "financial_year_start",
    "Net Profit": "net_profit",
    "Net Profit This Financial Year": "net_profit_this_financial_year",
    "Net Profit This Month": "net_profit_this_month",
    "Income": "income",
    "Direct Costs": "direct_costs",
    "Expenses": "expenses",
    "Expenses This Financial Year": "expenses_this_financial_year",
    "Top Expense Account Rank": "top_expense_account_rank",
    "Gross Profit Percentage": "gross_profit_percentage",
    "Report Net Profit": "report_net_profit",
    "Balance Sheet Date": "balance_sheet_date",
    "Balance Sheet Amount": "balance_sheet_amount",
    "Total Assets": "total_assets",
    "Total Liabilities": "total_liabilities",
    "Total Equity": "total_equity",
    "Current Assets": "current_assets",
    "Current Liabilities": "current_liabilities",
    "Current Ratio": "current_ratio",
    "Return on Total Assets": "return_on_total_assets",
    "Liabilities to Equity": "liabilities_to_equity",
    "Invoiced Sales": "invoiced_sales",
    "Invoiced Sales Last Month": "invoiced_sales_last_month",
    "Invoiced Sales Growth": "invoiced_sales_growth",
    "Invoiced Sales Last 365 Days": "invoiced_sales_last_365_days",
    "Outstanding Receivables": "outstanding_receivables",
    "Invoices Due": "invoices_due",
    "Overdue Receivables": "overdue_receivables",
    "Debtor Days": "debtor_days",
    "Billed Purchases": "billed_purchases",
    "Billed Purchases Last Month": "billed_purchases_last_month",
    "Billed Purchases Growth": "billed_purchases_growth",
    "Outstanding Payables": "outstanding_payables",
    "Bills Due": "bills_due",
    "Overdue Payables": "overdue_payables",
    "Sales by Product": "sales_by_product",
    "Budget": "budget",
}
# The measure each tile of the content pack shows (docs/xero-model.md).
TILES: dict[str, str] = {
    name: REFERENCES[name]
    for name in (
        "Daily Cash Flow",
        "Cash In",
        "Cash Out",
        "Closing Balance",
        "Invoiced Sales Last Month",
        "Invoiced Sales Growth",
        "Invoices Due",
        "Outstanding Receivables",
        "Overdue Receivables",
        "Billed Purchases Last Month",
        "Billed Purchases Growth",
        "Bills Due",
        "Outstanding Payables",
        "Overdue Payables",
        "Sales by Product",
        "Net Profit",
        "Net Profit This Financial Year",
        "Net Profit This Month",
        "Top Expense Account Rank",
        "Total Assets",
        "Total Liabilities",
        "Total Equity",
        "Current Ratio",
        "Gross Profit Percentage",
        "Return on Total Assets",
        "Liabilities to Equity",
        "Debtor Days",
    )
}
MONTHLY = ("Cash In", "Cash Out", "Net Profit")
