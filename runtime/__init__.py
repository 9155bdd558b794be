"""Execution layer of the agent control plane: policy, jobs, sandbox, audit.

Nothing in this package imports from `bot`; front doors call `runtime.engine`.
"""
