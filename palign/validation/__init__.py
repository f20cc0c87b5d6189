"""Validation gates: the operator's checks run on each aligned commit before it is staged.

- `checks`: what a check is, read from palign.toml's [validate] or `--validate` (pure)
- `runner`: run the checks on a commit in a throw-away working tree, each in its own
  process group with a timeout and a clean environment
- `cache`: passing results keyed by (tree, command), so an identical tree is not checked again
- `gate`: what a failing check makes of an aligned result (`failed_validation`)
"""
