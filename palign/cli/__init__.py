"""`palign` command line: thin over `palign.service`; errors become exit codes in one place.

- `main`: the command group and `entry`, where errors turn into exit codes
- `options`: options several commands share, and the settings each command builds
- `local`: run, plan, conflicts, apply, rollback, demo
- `distributed`: worker, status, report, cancel, resume, flower
- `output`: what the commands print
"""
