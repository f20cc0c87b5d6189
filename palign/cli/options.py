"""Options several commands share, and the settings each command builds from its flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from palign.model import Strategy
from palign.settings import DEFAULT_BROKER_URL, Settings

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

ONTO = click.option(
    "--onto",
    "targets",
    multiple=True,
    required=True,
    metavar="TARGET",
    help="Branch (or ref) to align onto, e.g. main; repeatable (main, release/2.x ...).",
)
BRANCH = click.option(
    "--branch",
    "branch_globs",
    multiple=True,
    metavar="GLOB",
    help="Only branches whose name matches (repeatable; refs/... globs match full ref names). "
    "Default: every branch but the targets.",
)
STRATEGY = click.option(
    "--strategy",
    type=click.Choice([s.value for s in Strategy]),
    default="rebase",
    show_default=True,
    help="rebase = `git rebase TARGET`; merge = `git merge TARGET`; auto = rebase, or the merge "
    "where only the merge is clean.",
)
WORKERS = click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Worker processes (default: CPU count).",
    callback=lambda _ctx, _param, value: value or os.cpu_count() or 1,
)
CONFIG = click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="palign.toml with target rules, declared stacks, plan settings and [validate] checks "
    "(default: ./palign.toml).",
)
BROKER = click.option(
    "--broker",
    metavar="URL",
    default=None,
    help="Redis URL of the Celery broker, e.g. redis://:password@host:6379/0 "
    f"(default: $PALIGN_BROKER_URL, else {DEFAULT_BROKER_URL}).",
)


def local_settings() -> Settings:
    """The settings of a command that works on this machine only."""
    return Settings.load()


def broker_settings(broker: str | None) -> Settings:
    """The settings of a command that talks to the broker: --broker, else the environment."""
    return Settings.load(broker_url=broker, distributed=True)
