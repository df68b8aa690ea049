"""Job ids: UUID version 7 (RFC 9562), time-ordered so that a table's primary key is also its
enqueue order, and new rows land at the right edge of the index instead of all over it."""

from __future__ import annotations

import os
import threading
import uuid
from datetime import datetime

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7(at: datetime) -> uuid.UUID:
    """A version 7 UUID for the instant `at`; within one process, ids of one millisecond keep
    increasing (a 12-bit counter seeded at random, RFC 9562 method 1)."""
    global _last_ms, _counter
    ms = int(at.timestamp() * 1000)
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                ms += 1
                _counter = int.from_bytes(os.urandom(2), "big") & 0x7FF
        else:
            _counter = int.from_bytes(os.urandom(2), "big") & 0x7FF
        _last_ms = ms
        counter = _counter
    tail = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | tail
    return uuid.UUID(int=value)
