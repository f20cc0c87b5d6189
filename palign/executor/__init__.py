"""Executors run a list of alignment units: `local` (a process pool, the embedded
default) and, in the distributed mode, Celery."""
