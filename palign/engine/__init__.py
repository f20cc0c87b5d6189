"""In-memory alignment with pygit2: nothing here checks out a working tree.

`align.align_branch` is the one entry point; both executors (the local process pool and
the Celery tasks) call it with an open mirror repository and an `AlignRequest`.
"""
