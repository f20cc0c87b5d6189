"""Distributed execution: a run's plan as a Celery canvas over Redis.

- `client`: the one door from the service layer (submit, wait, status, cancel, resume,
  report; start a worker or Flower)
- `app`: the Celery app, made from the settings (`make_app`), and its configuration
- `producer`: the canvas of a run, enqueued chunk by chunk; following a run to its report
- `tasks`: align one level of a unit, check it, close a chunk of the run
- `worker`: a worker process's life (Celery's signals): its store connection, heartbeats
- `workspace`: a worker process's mirror and scratch store for the run it serves
- `finish`: the end of a run: its report, then its apply
- `store`: the run state in Redis; the one module that knows palign's key names
"""
