"""Executors run units of work: `unit` is the work itself (a stack, level by level, in
one process), `local` runs units on a process pool (the embedded default); in distributed
mode Celery's tasks run `unit` (see `palign.distributed`)."""
