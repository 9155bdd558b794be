"""Browser jobs: steps in a fresh, governed browser context, paused before anything mutates.
The kind is kind.py; its modules are listed there. Importing the package imports nothing."""
