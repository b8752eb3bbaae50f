"""Controller machinery that knows nothing of AppTasks, as controller-runtime and client-go give
Go controllers: list-watch (`watcher`) into caches (`store`), the work queue (`workqueue`) and
backoff (`backoff`), Lease election (`leader`), Events (`events`), the resync job (`resync`),
field sets (`fieldset`) and credential health (`refusals`).

Imports only `client` and `settings` (and the standard and third-party libraries).
"""
