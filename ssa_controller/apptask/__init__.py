"""What an AppTask means, pure wherever it can be: its Deployment (`desired`), its status
(`status`), drift (`drift`) and quantities (`quantity`), fights (`fights`), how long a status
waits for a rollout (`settle`), ownership transfers (`adopt`), dry-run plans (`diff`, `redact`),
which events matter (`predicates`), which namespaces are served (`scope`) and what a reconcile
did (`outcomes`).

Imports `client`, `runtime` and `settings`; never `serving` or the modules above it.
"""
