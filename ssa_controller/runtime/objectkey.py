"""Which object a cache entry, a queued item or a reconciler's memory is about.

As controller-runtime's client.ObjectKey (types.NamespacedName): a namespace (empty for a
cluster-scoped object) and a name, shown as "namespace/name". A tuple: hashed and compared as
one, its strings shared with the cached object's metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class ObjectKey(NamedTuple):
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectKey:
        """The key of an object as the API server sends it."""
        meta = obj["metadata"]
        return cls(meta.get("namespace", ""), meta["name"])
