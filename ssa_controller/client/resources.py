"""The REST resources the controller uses and their URL paths.

An object travels as a plain dict (decoded JSON, `Obj`), never as a generated model: the
controller caches thousands of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict
from urllib.parse import quote

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """A REST resource: its group/version, plural name and scope."""

    group_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        return path(self.group_version, self.plural, namespace if self.namespaced else None,
                    name, subresource)


def path(group_version: str, plural: str, namespace: str | None = None,
         name: str | None = None, subresource: str | None = None) -> str:
    """The URL path of a collection or object: path("apps/v1", "deployments", "ns", "x")."""
    parts = ["/api" if "/" not in group_version else "/apis", group_version]
    if namespace:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(plural)
    if name:
        parts.append(quote(name, safe=""))
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


APPTASKS = Resource("example.com/v1", "apptasks")
DEPLOYMENTS = Resource("apps/v1", "deployments")
SERVICES = Resource("v1", "services")
EVENTS = Resource("events.k8s.io/v1", "events")
LEASES = Resource("coordination.k8s.io/v1", "leases")
CRDS = Resource("apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False)


ListOptions = TypedDict("ListOptions", {
    "labelSelector": str | None, "fieldSelector": str | None, "limit": int,
    "continue": str, "resourceVersion": str, "resourceVersionMatch": str,
}, total=False)
"""What a list asks for (metav1.ListOptions' query keys; a None value is left out): the
selectors, and the paging a caller does itself (`limit` items a page, `continue` with the
previous page's token) as client-go's pager does."""

ListMeta = TypedDict("ListMeta", {
    "resourceVersion": str, "continue": str, "remainingItemCount": int,
}, total=False)
"""A list's metadata: the resourceVersion a watch resumes from, the next page's token."""


class ObjectList(TypedDict, total=False):
    """A collection as the server answers a list: one page of its items."""

    apiVersion: str
    kind: str
    metadata: ListMeta
    items: list[Obj]
