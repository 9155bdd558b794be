"""Front doors of the agent control plane: thin views over `runtime.engine`.

A front door parses, calls the engine and renders; it never decides policy.
"""
