"""Options several commands share, and the settings each command builds from its flags."""

from __future__ import annotations

import os
from datetime import timedelta
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
ONTO_OR_PLAN = click.option(  # `palign run`: a plan file names its branches' targets
    "--onto",
    "targets",
    multiple=True,
    metavar="TARGET",
    help="Branch (or ref) to align onto, e.g. main; repeatable (main, release/2.x ...). "
    "Default with --plan: the targets the plan file assigns, in the order they first appear.",
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


class Age(click.ParamType[timedelta]):
    """A duration: 30d, 12h, 90m, 2w (or 0: any age)."""

    name = "AGE"
    _UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip().lower()
        if text == "0":
            return timedelta(0)
        number, unit = text[:-1], text[-1:]
        if unit not in self._UNITS or not number.isdigit():
            self.fail(f"{value!r} is not an age like 30d, 12h, 90m or 2w", param, ctx)
        return timedelta(seconds=int(number) * self._UNITS[unit])


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
