"""The report stage: the run's records, their rendering (tables, Markdown, JUnit) and storage."""
