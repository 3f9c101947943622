"""tap-xero tests."""
