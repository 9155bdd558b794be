"""Job kinds: the plug-in point (base.py), the one table of them (registry.py), and a package
per built-in kind holding its run, review, publish and export code."""
