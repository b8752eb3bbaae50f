"""Values for every workload field of the AppTask spec (apptask.fields), shared by the render
tests (tests/unit/test_desired.py) and the per-field lifecycle test against the API server
(tests/integration/test_workload_fields.py): each field is set, changed, removed, and changed
by another writer.

A Sample's `context` holds what the field needs beside it (a volume for a mount); `foreign` is
how another writer (kubectl edit) changes the field on the Deployment: a strategic merge patch
of the pod template (containers by name), or of the Deployment's spec."""

from __future__ import annotations

from typing import Any, NamedTuple

from ssa_controller.apptask import fields


class Sample(NamedTuple):
    first: Any
    second: Any
    """A change of `first` (the same union member: see tests of unions for the others)."""
    foreign: Any
    """What another writer sets the field to on the Deployment."""
    context: dict[str, Any] = {}


def _probe(handler: dict[str, Any], **timings: int) -> dict[str, Any]:
    return {**handler, **timings}


LABEL = "apptasks.example.com/name"
SAMPLES: dict[str, Sample] = {
    # container
    "envFrom": Sample([{"configMapRef": {"name": "settings"}}],
                      [{"configMapRef": {"name": "settings", "optional": True}},
                       {"secretRef": {"name": "credentials"}, "prefix": "DB_"}],
                      [{"configMapRef": {"name": "other"}}]),
    "livenessProbe": Sample(_probe({"httpGet": {"path": "/healthz", "port": "http"}}),
                            _probe({"httpGet": {"path": "/live", "port": 8080,
                                                "httpHeaders": [{"name": "X-Probe",
                                                                 "value": "1"}]}},
                                   initialDelaySeconds=0, periodSeconds=20),
                            _probe({"httpGet": {"path": "/other", "port": 8080}})),
    "readinessProbe": Sample(_probe({"tcpSocket": {"port": 8080}}),
                             _probe({"tcpSocket": {"port": "http"}}, timeoutSeconds=2,
                                    successThreshold=2),
                             _probe({"tcpSocket": {"port": 9999}})),
    "startupProbe": Sample(_probe({"exec": {"command": ["true"]}}, failureThreshold=30),
                           _probe({"exec": {"command": ["sh", "-c", "true"]}},
                                  failureThreshold=10),
                           _probe({"exec": {"command": ["false"]}})),
    "volumeMounts": Sample([{"name": "data", "mountPath": "/data", "readOnly": True}],
                           [{"name": "data", "mountPath": "/data", "subPath": "app"},
                            {"name": "data", "mountPath": "/cache"}],
                           [{"name": "data", "mountPath": "/data", "readOnly": False}],
                           {"volumes": [{"name": "data", "emptyDir": {}}]}),
    "imagePullPolicy": Sample("Always", "Never", "IfNotPresent"),
    "securityContext": Sample({"readOnlyRootFilesystem": True},
                              {"readOnlyRootFilesystem": False, "runAsUser": 1000,
                               "runAsGroup": 1000, "capabilities": {"drop": ["ALL", "CHOWN"]}},
                              {"readOnlyRootFilesystem": False}),
    "workingDir": Sample("/srv", "/app", "/tmp"),
    # pod
    "volumes": Sample(
        [{"name": "settings", "configMap": {"name": "settings"}}],
        [{"name": "settings", "configMap": {"name": "settings", "defaultMode": 0o440,
                                            "items": [{"key": "a", "path": "a.conf"}]}},
         {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
         {"name": "credentials", "secret": {"secretName": "credentials", "optional": True}},
         {"name": "claim", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}},
         {"name": "all", "projected": {"sources": [
             {"configMap": {"name": "settings"}}, {"secret": {"name": "credentials"}},
             {"downwardAPI": {"items": [
                 {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                 {"path": "memory", "resourceFieldRef": {
                     "containerName": "app", "resource": "limits.memory",
                     "divisor": "1024Ki"}}]}}]}}],
        [{"name": "settings", "configMap": {"name": "other"}}]),
    "serviceAccountName": Sample("app-a", "app-b", "default"),
    "imagePullSecrets": Sample([{"name": "registry-a"}],
                               [{"name": "registry-a"}, {"name": "registry-b"}],
                               [{"name": "other"}]),
    "nodeSelector": Sample({"disk": "ssd"}, {"disk": "hdd", "zone": "a"}, {"disk": "nvme"}),
    "tolerations": Sample([{"key": "dedicated", "operator": "Exists"}],
                          [{"key": "dedicated", "operator": "Equal", "value": "apps",
                            "effect": "NoSchedule"},
                           {"key": "spot", "operator": "Exists", "effect": "NoExecute",
                            "tolerationSeconds": 60}],
                          [{"key": "other", "operator": "Exists"}]),
    "affinity": Sample(
        {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [
                {"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}},
        {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "preference": {"matchExpressions": [
                {"key": "disk", "operator": "In", "values": ["ssd"]}]}}]},
         "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
             {"weight": 100, "podAffinityTerm": {
                 "topologyKey": "kubernetes.io/hostname",
                 "labelSelector": {"matchLabels": {LABEL: "web"}}}}]}},
        {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 99, "preference": {"matchExpressions": [
                {"key": "disk", "operator": "In", "values": ["hdd"]}]}}]}}),
    "topologySpreadConstraints": Sample(
        [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
          "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {LABEL: "x"}}}],
        [{"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone",
          "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {LABEL: "x"}}},
         {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
          "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchExpressions": [
              {"key": LABEL, "operator": "Exists"}]}}],
        [{"maxSkew": 5, "topologyKey": "topology.kubernetes.io/zone",
          "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {LABEL: "x"}}}]),
    "priorityClassName": Sample("system-cluster-critical", "system-node-critical", "other"),
    "podSecurityContext": Sample({"fsGroup": 2000},
                                 {"fsGroup": 3000, "fsGroupChangePolicy": "OnRootMismatch",
                                  "runAsUser": 1000, "supplementalGroups": [4000]},
                                 {"fsGroup": 1}),
    "terminationGracePeriodSeconds": Sample(10, 0, 99),
    "hostNetwork": Sample(False, False, True),
    "hostPID": Sample(False, False, True),
    "hostIPC": Sample(False, False, True),
    # deployment
    "strategy": Sample({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                       {"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}},
                       {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3}}),
    "minReadySeconds": Sample(5, 0, 7),
    "progressDeadlineSeconds": Sample(120, 300, 60),
    "revisionHistoryLimit": Sample(3, 0, 10),
}
"""Every workload field (tests check that none is missing)."""

ENV_FROM_FIELD = Sample(
    [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
    [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
     {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "credentials", "key": "pw"}}},
     {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode",
                                                        "optional": True}}},
     {"name": "MEMORY", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                           "divisor": "1Mi"}}}],
    [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}])
"""env[].valueFrom (env is one of the first fields; valueFrom is new)."""


# Ground truth: what a v1.20.2 kube-apiserver did with an apply of WORKLOAD_BODY under one manager.
WORKLOAD_BODY: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "g1", "namespace": "exp"},
    "spec": {
        "selector": {"matchLabels": {"a": "g1"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
        "minReadySeconds": 0,
        "template": {"metadata": {"labels": {"a": "g1"}}, "spec": {
            "containers": [{
                "name": "app", "image": "nginx",
                "volumeMounts": [{"name": "a", "mountPath": "/a", "readOnly": False}],
                "env": [{"name": "M", "valueFrom": {"resourceFieldRef": {
                    "resource": "limits.memory", "divisor": "1024Ki"}}}],
                "livenessProbe": {"httpGet": {"port": 80}, "initialDelaySeconds": 0}}],
            "volumes": [{"name": "a", "configMap": {"name": "cm",
                                                    "items": [{"key": "k", "path": "p"}]}},
                        {"name": "b", "emptyDir": {"sizeLimit": "1024Mi"}}],
            "imagePullSecrets": [{"name": "r"}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                           "whenUnsatisfiable": "DoNotSchedule",
                                           "labelSelector": {"matchLabels": {"a": "g1"}}}],
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "nodeSelector": {"disk": "ssd"}}}},
}
WORKLOAD_RECORDED: dict[str, Any] = {"f:spec": {
    "f:minReadySeconds": {}, "f:selector": {},
    "f:strategy": {"f:rollingUpdate": {"f:maxSurge": {}}, "f:type": {}},
    "f:template": {"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {
        "f:containers": {'k:{"name":"app"}': {
            ".": {}, "f:image": {}, "f:name": {},
            "f:env": {'k:{"name":"M"}': {".": {}, "f:name": {}, "f:valueFrom": {
                "f:resourceFieldRef": {"f:divisor": {}, "f:resource": {}}}}},
            "f:livenessProbe": {"f:httpGet": {"f:port": {}}, "f:initialDelaySeconds": {}},
            "f:volumeMounts": {'k:{"mountPath":"/a"}': {
                ".": {}, "f:mountPath": {}, "f:name": {}, "f:readOnly": {}}}}},
        "f:imagePullSecrets": {'k:{"name":"r"}': {".": {}, "f:name": {}}},
        "f:nodeSelector": {"f:disk": {}},
        "f:tolerations": {},
        "f:topologySpreadConstraints": {
            'k:{"topologyKey":"zone","whenUnsatisfiable":"DoNotSchedule"}': {
                ".": {}, "f:labelSelector": {}, "f:maxSkew": {}, "f:topologyKey": {},
                "f:whenUnsatisfiable": {}}},
        "f:volumes": {
            'k:{"name":"a"}': {".": {}, "f:configMap": {"f:items": {}, "f:name": {}},
                               "f:name": {}},
            'k:{"name":"b"}': {".": {}, "f:emptyDir": {"f:sizeLimit": {}}, "f:name": {}}}}}}}
"""What v1.20.2 recorded for WORKLOAD_BODY: volumes, mounts, pull secrets and spread
constraints by their keys, tolerations and a spread constraint's label selector atomic, zero
values (readOnly: false, minReadySeconds: 0) owned though the object leaves them out."""
WORKLOAD_LIVE: dict[str, Any] = {**WORKLOAD_BODY, "spec": {
    "selector": {"matchLabels": {"a": "g1"}},
    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%",
                                                            "maxSurge": 1}},
    "replicas": 1, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
    "template": {"metadata": {"labels": {"a": "g1"}}, "spec": {
        "volumes": [{"name": "a", "configMap": {"name": "cm", "items": [{"key": "k", "path": "p"}],
                                                "defaultMode": 420}},
                    {"name": "b", "emptyDir": {"sizeLimit": "1Gi"}}],
        "containers": [{
            "name": "app", "image": "nginx",
            "env": [{"name": "M", "valueFrom": {"resourceFieldRef": {
                "resource": "limits.memory", "divisor": "1Mi"}}}],
            "resources": {}, "volumeMounts": [{"name": "a", "mountPath": "/a"}],
            "livenessProbe": {"httpGet": {"path": "/", "port": 80, "scheme": "HTTP"},
                              "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                              "failureThreshold": 3},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File", "imagePullPolicy": "Always"}],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst", "nodeSelector": {"disk": "ssd"}, "securityContext": {},
        "imagePullSecrets": [{"name": "r"}], "schedulerName": "default-scheduler",
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                       "whenUnsatisfiable": "DoNotSchedule",
                                       "labelSelector": {"matchLabels": {"a": "g1"}}}]}}}}
"""... and the Deployment it returned: defaults filled in (probe timings, a ConfigMap
volume's defaultMode, a rollingUpdate's maxUnavailable), zero values left out, quantities
canonical ("1024Mi" as "1Gi")."""


def where(name: str) -> tuple[str, ...]:
    """Where a workload field is rendered in the Deployment ("*" for the one container)."""
    if name in fields.CONTAINER:
        return ("spec", "template", "spec", "containers", "*", name)
    if name in fields.POD:
        return ("spec", "template", "spec", fields.POD_NAMES.get(name, name))
    assert name in fields.DEPLOYMENT, name
    return ("spec", name)


def at(obj: Any, location: tuple[str, ...]) -> Any:
    """The value at `location` in an object (None where it has none)."""
    for step in location:
        if obj is None:
            return None
        obj = obj[0] if step == "*" else obj.get(step)
    return obj
