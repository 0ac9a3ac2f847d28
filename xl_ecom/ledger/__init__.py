"""The ledger: the system of record (SQLite beside the workbook, or PostgreSQL given a URL)."""
