"""Distributed execution: a run's plan as a Celery canvas over Redis.

- `settings`: where the broker is and the time limits, from the environment
- `app`: the Celery app and its settings (`celery -A palign.distributed.app worker`)
- `store`: the run state in Redis; the one module that knows palign's key names
- `workspace`: a worker process's mirror and scratch store for the run it serves
- `tasks`: align one level of a unit, close a chunk of the run, finish the run
- `producer`: plan, enqueue the canvas, wait for the report
"""
