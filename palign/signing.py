"""Seals on what crosses Redis: an HMAC-SHA256 with a key Redis never holds.

Redis is not trusted: whoever can write to it can send task messages, edit the records
producers and workers read back, or plant results. Everything palign acts on (task
messages, the results passed along a stack's chain and kept per branch, the run record's
request, the planned branches, the stored report, cached check results) travels sealed;
a seal that does not verify is refused (`ForgedRecord`) before anything runs. Counters,
states, progress events and locks are not sealed: tampering with them can disturb a run,
not run code or publish a result.

The key comes from the operator (`PALIGN_SIGNING_KEY_FILE`, or `PALIGN_SIGNING_KEY`),
the same on every producer and worker. Each seal names what it seals (`kind`), so a seal
made for one purpose is never accepted for another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from palign.errors import MalformedRecord

MIN_KEY_BYTES = 16


class ForgedRecord(MalformedRecord):
    """A sealed record whose seal does not verify: forged, altered, or sealed with
    another key."""


def _canonical(kind: str, payload: Any) -> bytes:
    return json.dumps([kind, payload], sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Signer:
    def __init__(self, key: bytes, *, purpose: str = "messages") -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a signing key needs at least {MIN_KEY_BYTES} bytes")
        # One key from the operator; a derived key per purpose (messages, check cache).
        self._key = hmac.new(key, f"palign {purpose}".encode(), hashlib.sha256).digest()
        self.key_id = hmac.new(self._key, b"palign key id", hashlib.sha256).hexdigest()[:16]

    def for_purpose(self, purpose: str) -> Signer:
        """A signer with a key of its own for another purpose, derived from this one."""
        return Signer(self._key, purpose=purpose)

    def mac(self, kind: str, payload: Any) -> str:
        return hmac.new(self._key, _canonical(kind, payload), hashlib.sha256).hexdigest()

    def seal(self, kind: str, payload: Any) -> dict[str, Any]:
        """`payload` (JSON) with its seal."""
        return {"kind": kind, "payload": payload, "mac": self.mac(kind, payload)}

    def open(self, kind: str, sealed: Any) -> Any:
        """The payload of a sealed `kind` record; `ForgedRecord` when the seal is missing,
        made for another kind or with another key, or the payload was altered."""
        if not isinstance(sealed, dict) or set(sealed) != {"kind", "payload", "mac"}:
            raise ForgedRecord(f"not a sealed {kind} record")
        mac = sealed["mac"]
        if sealed["kind"] != kind or not isinstance(mac, str):
            raise ForgedRecord(f"not a sealed {kind} record")
        if not hmac.compare_digest(mac, self.mac(kind, sealed["payload"])):
            raise ForgedRecord(f"the seal of a {kind} record does not verify (forged, altered, or another key)")
        return sealed["payload"]
