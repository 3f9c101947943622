"""Local emulators of the Xero API and of Power BI push datasets."""
