"""Code jobs: explicit steps or a model in a sandboxed worktree of a repository, a diff for review,
and the approved commits merged or pushed. The kind is kind.py; its run, publish and replay
are run.py, publish.py and replay.py."""
