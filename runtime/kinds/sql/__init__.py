"""SQL jobs: one read-only statement or a standard diagnostic, with results and plan as
evidence. The kind is kind.py; its run is run.py; what a request is, statements.py."""
