"""Per-language tables (Markdown, CSV, JSON) of a run's metrics."""
