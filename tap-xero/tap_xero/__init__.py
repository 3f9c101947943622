"""Singer tap for the Xero Accounting API."""
