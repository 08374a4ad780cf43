"""The part of a feature-cache key a task type owns: its encoding settings and the code that encodes."""

from __future__ import annotations

import hashlib
import inspect
import json
from typing import Any


def encoding_key(settings: dict[str, Any], *code: Any) -> str:
    """A digest of `settings` (what changes the features, not how they are batched) and the source of `code`
    (modules or classes), so that an edited encoder never reads features its older version wrote."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(json.dumps(settings, sort_keys=True, default=repr).encode())
    for obj in code:
        digest.update(inspect.getsource(obj).encode())
    return digest.hexdigest()
