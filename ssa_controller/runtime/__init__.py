"""Controller machinery that knows nothing of AppTasks, as controller-runtime and client-go give
Go controllers: list-watch (`watcher`) into caches (`store`), the work queue (`workqueue`) and
backoff (`backoff`), Lease election (`leader`), Events (`events`), the resync job (`resync`),
field sets (`fieldset`), credential health (`refusals`), and sharding (`sharding`: objects
spread over replicas by Leases and labels).

Imports only `client` and `settings` (and the standard and third-party libraries).
"""
