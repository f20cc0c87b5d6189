"""Credentials out of URLs before they are shown, logged or stored for display."""

from __future__ import annotations

import re

# A lone user name is an identity for ssh (`ssh://git@host/...`), but often a token for
# http(s) (`https://TOKEN@host/...`) and a password slot for redis: hide it there.
_USER_IS_NOT_SECRET = ("ssh", "git+ssh", "ssh+git")
# Query parameters that carry secrets (`?access_token=...`, `&private_token=...`).
_SECRET_PARAMETER = re.compile(
    r"(?i)([?&;](?:[a-z0-9_.-]*(?:token|password|passwd|secret|key|auth|signature|sig|credential)[a-z0-9_.-]*)=)[^&;#]*"
)


def has_secret_parameter(url: str) -> bool:
    """Does the URL's query carry something that looks like a secret (`?access_token=`)?"""
    return bool(_SECRET_PARAMETER.search(url.partition("?")[1] + url.partition("?")[2]))


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """Every URL in `text` (git's messages quote them) redacted."""
    return _URL.sub(lambda found: redact_url(found.group(0)), text)


def redact_url(url: str) -> str:
    """`scheme://user:password@host/...` -> `scheme://user:***@host/...`; a user name that
    may be a token -> `***`; secret-looking query parameters -> `name=***`. URLs without
    credentials (and scp-like `user@host:path`, local paths) are returned as they are.
    The host is what follows the last `@` before the path: `user:p@ss@host` hides `p@ss`."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    authority, slash, path = rest.partition("/")
    credentials_part, at, host_part = authority.rpartition("@")
    if "?" in host_part:  # no path: the query starts right after the host
        host_part, mark, query = host_part.partition("?")
        authority = f"{credentials_part}{at}{host_part}"
        path, slash = f"{mark}{query}{slash}{path}", ""
    path = _SECRET_PARAMETER.sub(r"\1***", path)
    if "@" not in authority:
        return f"{scheme}://{authority}{slash}{path}"
    credentials, host = authority.rsplit("@", 1)
    user, has_password, _ = credentials.partition(":")
    if has_password:
        shown = f"{user}:***" if user else "***"
    elif scheme.lower() in _USER_IS_NOT_SECRET:
        shown = user
    else:
        shown = "***"
    return f"{scheme}://{shown}@{host}{slash}{path}"
