"""Doc jobs: documents made or changed in a worktree of a docs repository, reviewed per document
as format-aware diffs (diff/) with previews, merged after approval. The kind is kind.py."""
