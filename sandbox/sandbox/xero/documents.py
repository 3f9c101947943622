"""Creating and changing documents the way Xero does: every change bumps the modified time,
posts its journals and raises its webhook event. Used by the generator and by mutations.
"""

from __future__ import annotations

from sandbox.xero.company import (
    AP,
    AR,
    BANK,
    OWNER,
    Line,
    Org,
    account_ref,
    cash_lines_for_payment,
    contact_ref,
    line_totals,
)
from sandbox.xero.util import Record, money, msdate


def totals(lines: list[Record]) -> tuple[float, float]:
    sub, tax = line_totals(lines)
    return money(sub), money(tax)


def reverse(lines: list[Line]) -> list[Line]:
    return [
        (code, -net, -tax, description, tracking) for code, net, tax, description, tracking in lines
    ]


# ---- invoices ------------------------------------------------------------------------------
def invoice_lines(org: Org, invoice: Record) -> list[Line]:
    """The accrual journal of an invoice or credit note, closed on AR or AP."""
    kind = invoice["Type"]
    sign = -1 if kind in ("ACCREC", "ACCPAYCREDIT") else 1
    control = AR if kind in ("ACCREC", "ACCRECCREDIT") else AP
    return org.with_control(org.document_lines(invoice, sign), control, invoice["Contact"]["Name"])


def new_invoice(
    org: Org,
    *,
    kind: str,
    contact: Record,
    date_ms: int,
    due_ms: int,
    lines: list[Record],
    currency: str,
    rate: float,
    status: str,
    created_ms: int,
) -> Record:
    sub, tax = totals(lines)
    total = round(sub + tax, 2)
    invoice: Record = {
        "Type": kind,
        "InvoiceID": org.new_id(),
        "InvoiceNumber": org.next_number("INV" if kind == "ACCREC" else "BILL"),
        "Reference": f"Ref {len(org.data['Invoices']) + 1}",
        "Contact": contact_ref(contact),
        "Date": msdate(date_ms),
        "DueDate": msdate(due_ms),
        "Status": status,
        "LineAmountTypes": "Exclusive",
        "LineItems": lines,
        "SubTotal": sub,
        "TotalTax": tax,
        "Total": total,
        "CurrencyCode": currency,
        "CurrencyRate": rate,
        "AmountDue": total,
        "AmountPaid": 0.0,
        "AmountCredited": 0.0,
        "SentToContact": kind == "ACCREC" and status == "AUTHORISED",
        "HasAttachments": False,
        "IsDiscounted": False,
        "HasErrors": False,
        "Payments": [],
        "CreditNotes": [],
        "Prepayments": [],
        "Overpayments": [],
    }
    org.put("Invoices", invoice, created_ms)
    if status == "AUTHORISED":
        approve_invoice(org, invoice, created_ms)
    org.event("INVOICE", "CREATE", invoice["InvoiceID"])
    return invoice


def approve_invoice(org: Org, invoice: Record, now_ms: int) -> None:
    invoice["Status"] = "AUTHORISED"
    lines = invoice_lines(org, invoice)
    org.control_base[invoice["InvoiceID"]] = lines[-1][1]
    org.post(
        now_ms,
        _doc_date(invoice),
        invoice["Type"],
        invoice["InvoiceID"],
        invoice.get("InvoiceNumber", ""),
        lines,
        cash=False,
    )
    org.touch("Invoices", invoice["InvoiceID"], now_ms)


def delete_invoice(org: Org, invoice: Record, now_ms: int) -> None:
    if invoice["Status"] not in ("DRAFT", "SUBMITTED"):
        msg = "only draft or submitted invoices can be deleted"
        raise ValueError(msg)
    invoice["Status"] = "DELETED"
    invoice["AmountDue"] = 0.0
    org.touch("Invoices", invoice["InvoiceID"], now_ms)
    org.event("INVOICE", "UPDATE", invoice["InvoiceID"])


def void_invoice(org: Org, invoice: Record, now_ms: int) -> None:
    if invoice["Status"] != "AUTHORISED" or invoice["AmountPaid"] or invoice["AmountCredited"]:
        msg = "only authorised invoices without payments or credits can be voided"
        raise ValueError(msg)
    org.check_open(_doc_date(invoice))
    invoice["Status"] = "VOIDED"
    invoice["AmountDue"] = 0.0
    org.post(
        now_ms,
        _doc_date(invoice),
        invoice["Type"],
        invoice["InvoiceID"],
        invoice.get("InvoiceNumber", ""),
        reverse(invoice_lines(org, invoice)),
        cash=False,
    )
    org.touch("Invoices", invoice["InvoiceID"], now_ms)
    org.event("INVOICE", "UPDATE", invoice["InvoiceID"])


def pay_invoice(
    org: Org, invoice: Record, amount: float, date_ms: int, now_ms: int, reference: str = ""
) -> Record:
    """A payment from the main bank account; the invoice turns PAID when nothing is due."""
    due = round(invoice["AmountDue"] * 100)
    pay = round(amount * 100)
    if invoice["Status"] != "AUTHORISED" or pay <= 0 or pay > due:
        msg = f"cannot pay {amount} on {invoice['InvoiceID']} ({invoice['Status']})"
        raise ValueError(msg)
    total = round(invoice["Total"] * 100)
    settled_before = total - due
    settled_after = settled_before + pay
    control = org.control_base[invoice["InvoiceID"]]
    base_before = round(control * settled_before / total) if total else 0
    base_after = control if settled_after == total else round(control * settled_after / total)
    base = abs(base_after - base_before)
    sales = invoice["Type"] == "ACCREC"
    control_code = AR if sales else AP
    bank_delta = base if sales else -base
    payment_type = "ACCRECPAYMENT" if sales else "ACCPAYPAYMENT"
    payment_id = org.new_id()
    accrual: list[Line] = [
        (BANK, bank_delta, 0, invoice["Contact"]["Name"], []),
        (control_code, -bank_delta, 0, invoice["Contact"]["Name"], []),
    ]
    org.post(now_ms, date_ms, payment_type, payment_id, reference, accrual, cash=False)
    cash = cash_lines_for_payment(invoice_lines(org, invoice), control_code, bank_delta, BANK)
    org.post(now_ms, date_ms, payment_type, payment_id, reference, cash, cash=True, accrual=False)
    bank = org.accounts[BANK]
    payment: Record = {
        "PaymentID": payment_id,
        "Date": msdate(date_ms),
        "BankAmount": money(base),
        "Amount": money(pay),
        "Reference": reference,
        "CurrencyRate": invoice["CurrencyRate"],
        "PaymentType": payment_type,
        "Status": "AUTHORISED",
        "IsReconciled": False,
        "HasAccount": True,
        "HasValidationErrors": False,
        "Account": {"AccountID": bank["AccountID"], "Code": bank["Code"]},
        "Invoice": {
            "InvoiceID": invoice["InvoiceID"],
            "InvoiceNumber": invoice["InvoiceNumber"],
            "Type": invoice["Type"],
            "Contact": invoice["Contact"],
            "CurrencyCode": invoice["CurrencyCode"],
        },
    }
    org.put("Payments", payment, now_ms)
    invoice["AmountPaid"] = money(round(invoice["AmountPaid"] * 100) + pay)
    invoice["AmountDue"] = money(due - pay)
    invoice["Payments"].append(
        {
            "PaymentID": payment_id,
            "Date": msdate(date_ms),
            "Amount": money(pay),
            "Reference": reference,
            "CurrencyRate": invoice["CurrencyRate"],
            "HasAccount": True,
            "HasValidationErrors": False,
        }
    )
    if due == pay:
        invoice["Status"] = "PAID"
        invoice["FullyPaidOnDate"] = msdate(date_ms)
    org.touch("Invoices", invoice["InvoiceID"], now_ms)
    org.event("INVOICE", "UPDATE", invoice["InvoiceID"])
    return payment


def delete_payment(org: Org, payment: Record, now_ms: int) -> None:
    """Payments are soft-deleted (status DELETED); the invoice is owed again."""
    if payment["Status"] == "DELETED":
        msg = "payment already deleted"
        raise ValueError(msg)
    invoice = org.data["Invoices"][payment["Invoice"]["InvoiceID"]]
    payment["Status"] = "DELETED"
    lines = _journal_as_lines(org, payment["PaymentID"], cash=False)
    org.post(
        now_ms,
        _doc_date(payment),
        payment["PaymentType"],
        payment["PaymentID"],
        "",
        reverse(lines),
        cash=False,
    )
    cash_lines = _journal_as_lines(org, payment["PaymentID"], cash=True)
    org.post(
        now_ms,
        _doc_date(payment),
        payment["PaymentType"],
        payment["PaymentID"],
        "",
        reverse(cash_lines),
        cash=True,
        accrual=False,
    )
    pay = round(payment["Amount"] * 100)
    invoice["AmountPaid"] = money(round(invoice["AmountPaid"] * 100) - pay)
    invoice["AmountDue"] = money(round(invoice["AmountDue"] * 100) + pay)
    invoice["Payments"] = [p for p in invoice["Payments"] if p["PaymentID"] != payment["PaymentID"]]
    if invoice["Status"] == "PAID":
        invoice["Status"] = "AUTHORISED"
        invoice.pop("FullyPaidOnDate", None)
    org.touch("Payments", payment["PaymentID"], now_ms)
    org.touch("Invoices", invoice["InvoiceID"], now_ms)
    org.event("INVOICE", "UPDATE", invoice["InvoiceID"])


def _journal_as_lines(org: Org, source_id: str, *, cash: bool) -> list[Line]:
    journals = org.cash_journals if cash else org.journals
    for journal in journals:
        if journal["SourceID"] == source_id:
            return [
                (
                    line["AccountCode"],
                    round(line["NetAmount"] * 100),
                    round(line["TaxAmount"] * 100),
                    line["Description"],
                    line["TrackingCategories"],
                )
                for line in journal["JournalLines"]
            ]
    return []


# ---- credit notes --------------------------------------------------------------------------
def new_credit_note(
    org: Org,
    *,
    kind: str,
    contact: Record,
    date_ms: int,
    lines: list[Record],
    currency: str,
    rate: float,
    created_ms: int,
    status: str,
) -> Record:
    sub, tax = totals(lines)
    total = round(sub + tax, 2)
    note: Record = {
        "Type": kind,
        "CreditNoteID": org.new_id(),
        "CreditNoteNumber": org.next_number("CN"),
        "Reference": "Credit",
        "Contact": contact_ref(contact),
        "Date": msdate(date_ms),
        "Status": status,
        "LineAmountTypes": "Exclusive",
        "LineItems": lines,
        "SubTotal": sub,
        "TotalTax": tax,
        "Total": total,
        "CurrencyCode": currency,
        "CurrencyRate": rate,
        "RemainingCredit": total if status == "AUTHORISED" else 0.0,
        "Allocations": [],
        "Payments": [],
        "SentToContact": False,
        "HasAttachments": False,
        "HasErrors": False,
    }
    org.put("CreditNotes", note, created_ms)
    if status in ("AUTHORISED", "VOIDED"):
        journal = invoice_lines(org, note)
        org.post(
            created_ms,
            date_ms,
            kind,
            note["CreditNoteID"],
            note["CreditNoteNumber"],
            journal,
            cash=False,
        )
        if status == "VOIDED":
            org.post(
                created_ms,
                date_ms,
                kind,
                note["CreditNoteID"],
                note["CreditNoteNumber"],
                reverse(journal),
                cash=False,
            )
    org.event("CREDITNOTE", "CREATE", note["CreditNoteID"])
    return note


def allocate_credit(org: Org, note: Record, invoice: Record, amount: float, now_ms: int) -> None:
    """Apply credit to an invoice of the same contact: AR to AR, so no journal."""
    applied = round(amount * 100)
    note["RemainingCredit"] = money(round(note["RemainingCredit"] * 100) - applied)
    note["Allocations"].append(
        {
            "AllocationID": org.new_id(),
            "Amount": money(applied),
            "Date": note["Date"],
            "Invoice": {
                "InvoiceID": invoice["InvoiceID"],
                "InvoiceNumber": invoice["InvoiceNumber"],
            },
        }
    )
    if note["RemainingCredit"] == 0:
        note["Status"] = "PAID"
        note["FullyPaidOnDate"] = note["Date"]
    invoice["AmountCredited"] = money(round(invoice["AmountCredited"] * 100) + applied)
    due = round(invoice["AmountDue"] * 100) - applied
    invoice["AmountDue"] = money(due)
    invoice["CreditNotes"].append(
        {
            "CreditNoteID": note["CreditNoteID"],
            "CreditNoteNumber": note["CreditNoteNumber"],
            "AppliedAmount": money(applied),
            "Date": note["Date"],
            "Total": note["Total"],
            "HasErrors": False,
        }
    )
    if due == 0:
        invoice["Status"] = "PAID"
        invoice["FullyPaidOnDate"] = note["Date"]
    org.touch("CreditNotes", note["CreditNoteID"], now_ms)
    org.touch("Invoices", invoice["InvoiceID"], now_ms)


# ---- bank ----------------------------------------------------------------------------------
def new_bank_transaction(
    org: Org,
    *,
    kind: str,
    contact: Record,
    bank: Record,
    date_ms: int,
    lines: list[Record],
    created_ms: int,
    status: str,
) -> Record:
    sub, tax = totals(lines)
    txn: Record = {
        "BankTransactionID": org.new_id(),
        "Type": kind,
        "Contact": contact_ref(contact),
        "LineItems": lines,
        "BankAccount": account_ref(bank),
        "IsReconciled": True,
        "Date": msdate(date_ms),
        "Reference": f"Bank {len(org.data['BankTransactions']) + 1}",
        "CurrencyCode": org.profile.currency,
        "CurrencyRate": 1.0,
        "Status": status,
        "LineAmountTypes": "Exclusive",
        "SubTotal": sub,
        "TotalTax": tax,
        "Total": round(sub + tax, 2),
        "HasAttachments": False,
    }
    org.put("BankTransactions", txn, created_ms)
    source = "CASHREC" if kind == "RECEIVE" else "CASHPAID"
    sign = -1 if kind == "RECEIVE" else 1
    journal = org.with_control(org.document_lines(txn, sign), bank["Code"], contact["Name"])
    org.post(
        created_ms, date_ms, source, txn["BankTransactionID"], txn["Reference"], journal, cash=True
    )
    if status == "DELETED":
        org.post(
            created_ms,
            date_ms,
            source,
            txn["BankTransactionID"],
            txn["Reference"],
            reverse(journal),
            cash=True,
        )
    return txn


def new_transfer(
    org: Org,
    source: Record,
    target: Record,
    amount: int,
    date_ms: int,
    created_ms: int,
    status: str,
) -> Record:
    transfer: Record = {
        "BankTransferID": org.new_id(),
        "FromBankAccount": account_ref(source),
        "ToBankAccount": account_ref(target),
        "Amount": money(amount),
        "Date": msdate(date_ms),
        "CurrencyRate": 1.0,
        "FromBankTransactionID": org.new_id(),
        "ToBankTransactionID": org.new_id(),
        "FromIsReconciled": False,
        "ToIsReconciled": False,
        "Reference": f"Transfer {len(org.data['BankTransfers']) + 1}",
        "HasAttachments": False,
        "Status": status,
    }
    org.put("BankTransfers", transfer, created_ms)
    journal: list[Line] = [
        (target["Code"], amount, 0, "Transfer", []),
        (source["Code"], -amount, 0, "Transfer", []),
    ]
    org.post(created_ms, date_ms, "TRANSFER", transfer["BankTransferID"], "", journal, cash=True)
    if status == "DELETED":
        org.post(
            created_ms,
            date_ms,
            "TRANSFER",
            transfer["BankTransferID"],
            "",
            reverse(journal),
            cash=True,
        )
    return transfer


def delete_transfer(org: Org, transfer: Record, now_ms: int) -> None:
    if transfer["Status"] == "DELETED":
        msg = "transfer already deleted"
        raise ValueError(msg)
    transfer["Status"] = "DELETED"
    lines = _journal_as_lines(org, transfer["BankTransferID"], cash=False)
    org.post(
        now_ms,
        _doc_date(transfer),
        "TRANSFER",
        transfer["BankTransferID"],
        "",
        reverse(lines),
        cash=True,
    )
    # A transfer has no UpdatedDateUTC; its CreatedDateUTC (what If-Modified-Since reads for
    # BankTransfers) stays the creation date, so an incremental read does not see the deletion.
    org.changed("BankTransfers", transfer["BankTransferID"])


def new_manual_journal(
    org: Org,
    *,
    narration: str,
    lines: list[tuple[str, int]],
    date_ms: int,
    created_ms: int,
    status: str,
    cash_basis: bool,
) -> Record:
    journal: Record = {
        "ManualJournalID": org.new_id(),
        "Narration": narration,
        "JournalLines": [
            {
                "LineAmount": money(amount),
                "AccountCode": code,
                "AccountID": org.accounts[code]["AccountID"],
                "Description": narration,
                "TaxType": "NONE",
                "TaxAmount": 0.0,
                "IsBlank": False,
                "Tracking": [],
            }
            for code, amount in lines
        ],
        "Date": msdate(date_ms),
        "LineAmountTypes": "NoTax",
        "Status": status,
        "ShowOnCashBasisReports": cash_basis,
        "HasAttachments": False,
    }
    org.put("ManualJournals", journal, created_ms)
    if status in ("POSTED", "VOIDED"):
        posting: list[Line] = [(code, amount, 0, narration, []) for code, amount in lines]
        mj = journal["ManualJournalID"]
        org.post(created_ms, date_ms, "MANJOURNAL", mj, narration, posting, cash=cash_basis)
        if status == "VOIDED":
            org.post(
                created_ms, date_ms, "MANJOURNAL", mj, narration, reverse(posting), cash=cash_basis
            )
    return journal


def opening_balance(org: Org, date_ms: int) -> None:
    amount = 5_000_000
    new_manual_journal(
        org,
        narration="Opening balance",
        lines=[(BANK, amount), (OWNER, -amount)],
        date_ms=date_ms,
        created_ms=date_ms + 3_600_000,
        status="POSTED",
        cash_basis=True,
    )


def new_prepayment(
    org: Org,
    collection: str,
    kind: str,
    contact: Record,
    lines: list[Record],
    date_ms: int,
    created_ms: int,
) -> Record:
    """A receive pre- or overpayment: cash in, unallocated credit for the contact."""
    sub, tax = totals(lines)
    total = round(sub + tax, 2)
    key = "PrepaymentID" if collection == "Prepayments" else "OverpaymentID"
    record: Record = {
        key: org.new_id(),
        "Type": kind,
        "Contact": contact_ref(contact),
        "Date": msdate(date_ms),
        "Status": "AUTHORISED",
        "LineAmountTypes": "Exclusive" if tax else "NoTax",
        "LineItems": lines,
        "SubTotal": sub,
        "TotalTax": tax,
        "Total": total,
        "CurrencyCode": org.profile.currency,
        "CurrencyRate": 1.0,
        "RemainingCredit": total,
        "Allocations": [],
        "Payments": [],
        "HasAttachments": False,
        "Reference": kind.title(),
    }
    org.put(collection, record, created_ms)
    source = "ARPREPAYMENT" if collection == "Prepayments" else "AROVERPAYMENT"
    journal = org.with_control(org.document_lines(record, -1), BANK, contact["Name"])
    org.post(created_ms, date_ms, source, record[key], record["Reference"], journal, cash=True)
    return record


def new_expense_claim(
    org: Org, user: Record, receipts: list[Record], date_ms: int, created_ms: int, index: int
) -> Record:
    total = round(sum(r["Total"] for r in receipts), 2)
    paid = index % 2 == 1
    claim: Record = {
        "ExpenseClaimID": org.new_id(),
        "Status": "PAID" if paid else "AUTHORISED",
        "Payments": [],
        "User": user,
        "Receipts": [{"ReceiptID": r["ReceiptID"]} for r in receipts],
        "Total": total,
        "AmountDue": 0.0 if paid else total,
        "AmountPaid": total if paid else 0.0,
        "PaymentDueDate": msdate(date_ms + 14 * 86_400_000),
        "ReportingDate": msdate(date_ms),
    }
    org.put("ExpenseClaims", claim, created_ms)
    lines: list[Line] = []
    for receipt in receipts:
        lines.extend(org.document_lines(receipt, 1))
    journal = org.with_control(lines, AP, "Expense claim")
    org.post(created_ms, date_ms, "EXPCLAIM", claim["ExpenseClaimID"], "", journal, cash=False)
    if paid:
        amount = journal[-1][1]
        payment: list[Line] = [
            (AP, -amount, 0, "Expense claim", []),
            (BANK, amount, 0, "Expense claim", []),
        ]
        org.post(
            created_ms, date_ms, "EXPPAYMENT", claim["ExpenseClaimID"], "", payment, cash=False
        )
        cash = cash_lines_for_payment(journal, AP, amount, BANK)
        org.post(
            created_ms,
            date_ms,
            "EXPPAYMENT",
            claim["ExpenseClaimID"],
            "",
            cash,
            cash=True,
            accrual=False,
        )
    return claim


def _doc_date(record: Record) -> int:
    return int(record["Date"][6:-7])
