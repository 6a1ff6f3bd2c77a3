"""The engine: ULP distance, budgets, verdicts, the run, the report and the ``xent`` command."""
