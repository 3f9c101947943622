"""Singer target for Power BI push datasets."""
