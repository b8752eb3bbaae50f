"""Sharding: the objects of one resource spread over the replicas of a controller, with
Kubernetes itself as the engine (Leases, labels, label-selected watches), as
timebertt/kubernetes-controller-sharding does it; knows nothing of AppTasks.

`ring` says which shard owns an object (FNV-1a 64 over its uid, as KEP-5866 hashes it, and ranges
of that 64-bit space per live shard); `members` which shards are live, from their Leases as
observed; `labels` how an assignment is recorded and moved (the shard label, the drain label,
the patches that write them); `sharder` the replica that assigns and moves objects.
"""
