"""Routine jobs: a request put on a schedule (or a routine changed or deleted). The kind is
kind.py; proposing and publishing the routine, run.py; what approval binds to, pending.py."""
