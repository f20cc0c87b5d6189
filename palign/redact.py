"""Credentials out of URLs before they are shown, logged or stored for display."""

from __future__ import annotations

# A lone user name is an identity for ssh (`ssh://git@host/...`), but often a token for
# http(s) (`https://TOKEN@host/...`) and a password slot for redis: hide it there.
_USER_IS_NOT_SECRET = ("ssh", "git+ssh", "ssh+git")


def redact_url(url: str) -> str:
    """`scheme://user:password@host/...` -> `scheme://user:***@host/...`; a user name that
    may be a token -> `***`. URLs without credentials (and scp-like `user@host:path`,
    local paths) are returned as they are."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    credentials, host = authority.rsplit("@", 1)
    user, has_password, _ = credentials.partition(":")
    if has_password:
        shown = f"{user}:***" if user else "***"
    elif scheme.lower() in _USER_IS_NOT_SECRET:
        shown = user
    else:
        shown = "***"
    return f"{scheme}://{shown}@{host}{slash}{path}"
