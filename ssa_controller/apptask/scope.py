"""Which namespaces' AppTasks the controller reconciles. Pure: the environment is passed in.

Those `namespaces` lists, or with none listed every namespace but the ones `ignoredNamespaces`
names or matches (`kube-*` by default: the control plane's own) and the controller's own
namespace ($POD_NAMESPACE, else `leaderElection.namespace`), where an AppTask labelled like the
controller's pods would join its Services. A namespace listed in `namespaces` is reconciled
whatever else matches it.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

from ..settings.config import Config

OWN_NAMESPACE_VARIABLE = "POD_NAMESPACE"
"""Set from the pod's metadata.namespace by manifests/deployment.yaml."""


class NamespaceScope:
    """Decides whether the AppTasks of a namespace are reconciled."""

    def __init__(self, listed: tuple[str, ...], ignored: tuple[str, ...], own: str) -> None:
        self._listed, self._ignored, self._own = frozenset(listed), ignored, own

    @classmethod
    def of(cls, config: Config, environ: Mapping[str, str]) -> NamespaceScope:
        own = environ.get(OWN_NAMESPACE_VARIABLE) or config.leader_election.namespace
        return cls(config.namespaces, config.ignored_namespaces, own)

    def ignores(self, namespace: str) -> str | None:
        """Why the namespace's AppTasks are ignored, or None when they are reconciled."""
        if self._listed:
            return None if namespace in self._listed else "not listed in namespaces"
        if namespace == self._own:
            return "the controller's own namespace; list it in namespaces to reconcile it"
        pattern = next((p for p in self._ignored if fnmatchcase(namespace, p)), None)
        return None if pattern is None else f"ignoredNamespaces: {pattern}"
