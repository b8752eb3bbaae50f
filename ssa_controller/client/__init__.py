"""The API client: the only code that talks to the Kubernetes API server. Imports nothing else
of ssa_controller.

- `kube`: the facade, `Kube`, a JSON client for one server with one identity;
- `resources`: the REST resources and their paths, lists' options and answers;
- `wire`: content types, request bodies, Kubernetes times, errors (`ApiError`);
- `watch`: an open watch (`WatchStream`);
- `credentials`, `kubeconfig`, `serviceaccount`: where the server and credentials come from;
- `transport`: the transport interface; `http1` (built in) and `urllib3transport` implement it;
  `pools` chooses one (`client.transport`) and rebuilds it when the client certificate changes;
- `serverwarnings`: the server's warnings, each logged once.

docs/client.md describes the parts.
"""
