"""Data: readers for column files, JSONL, CSV/TSV and hub datasets, label schemes, loading per language."""
