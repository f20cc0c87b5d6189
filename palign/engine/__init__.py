"""The engine: everything done with pygit2, in memory, with no working tree. Code outside
this package asks the engine (mostly `repository`) instead of using pygit2.

`align.align_branch` aligns one branch; both executors (the local process pool and the
Celery tasks) reach it through `palign.executor.unit`.
"""
