"""The environment every git command palign runs gets."""

from __future__ import annotations

import os


def git_env() -> dict[str, str]:
    """The environment every git command of palign's runs in: no prompts, no pager,
    no hooks, only allow-listed transports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in _KEPT_GIT_VARS}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_PAGER="cat",
        GIT_ASKPASS="true" if "GIT_ASKPASS" not in os.environ else os.environ["GIT_ASKPASS"],
        GIT_PROTOCOL_FROM_USER="0",
        GIT_CONFIG_COUNT="7",
        GIT_CONFIG_KEY_0="core.hooksPath",
        GIT_CONFIG_VALUE_0="/dev/null",
        GIT_CONFIG_KEY_1="protocol.allow",
        GIT_CONFIG_VALUE_1="never",
        GIT_CONFIG_KEY_2="protocol.file.allow",
        GIT_CONFIG_VALUE_2="always",
        GIT_CONFIG_KEY_3="protocol.ssh.allow",
        GIT_CONFIG_VALUE_3="always",
        GIT_CONFIG_KEY_4="protocol.https.allow",
        GIT_CONFIG_VALUE_4="always",
        GIT_CONFIG_KEY_5="protocol.http.allow",
        GIT_CONFIG_VALUE_5="always",
        GIT_CONFIG_KEY_6="protocol.git.allow",
        GIT_CONFIG_VALUE_6="always",
    )
    return env


# Identity and date variables the user may set on purpose; everything else GIT_* that
# could redirect git (GIT_DIR, GIT_INDEX_FILE, GIT_EXEC_PATH...) is dropped.
_KEPT_GIT_VARS = frozenset(
    {"GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT", "GIT_ASKPASS", "GIT_SSL_CAINFO", "GIT_SSL_NO_VERIFY"}
)
