"""The API client: the only code that talks to the Kubernetes API server.

A small JSON client (`kube.Kube`) over a keep-alive HTTP/1.1 transport of its own (`http1`) or,
through a proxy, urllib3 (`proxied`); credentials from a kubeconfig or a pod's service account
(`serviceaccount`); server warnings (`serverwarnings`). Imports nothing else of ssa_controller.
"""
