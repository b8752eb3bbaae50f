"""The shapes of the AppTask spec's workload fields, as manifests/crd.yaml declares them. Pure.

Each field is rendered where the Deployment has it: CONTAINER fields into the container,
POD fields into the pod template's spec, DEPLOYMENT fields into the Deployment's spec, and
SERVICE is the Service beside it (service.py). Bounds are sized from what real workloads need,
as for the first fields (docs/security.md); names, keys and list keys are the Deployment's own.
What turns into privilege is not here but in admission.py; what the pod may never have (host
namespaces, hostPath, a probe's host, a projected service-account token) has no field at all,
but for `hostNetwork`, `hostPID` and `hostIPC`, which are refused unless false.
"""

from __future__ import annotations

from .shapes import (
    INT64,
    Bool,
    Int,
    IntOrStr,
    List,
    Map,
    Obj,
    Opaque,
    Quantity,
    Shape,
    Str,
)

NAME = Str(253, min_length=1)
"""The name of an object in the AppTask's namespace (ConfigMap, Secret, claim, account...)."""
LABEL_KEY = Str(316, min_length=1)
LABEL_VALUE = Str(63)
PATH = Str(4096)
PORT = Int(1, 65535)
PORT_NAME = Str(15, min_length=1)
TARGET = IntOrStr(15, 1, 65535)
"""A port by number or by the name of a container port."""
MODE = Int(0, 0o777)
ID = Int(0, INT64[1])
"""A user or group id."""
SECONDS = Int(0, INT64[1])
PROTOCOL = Str(4, enum=("TCP", "UDP", "SCTP"), default="TCP")

KEY_TO_PATH = List(Obj({"key": NAME, "path": PATH, "mode": MODE}, ("key", "path")), 64)
KEY_REF = Obj({"name": NAME, "key": NAME, "optional": Bool()}, ("name", "key"))
FIELD_REF = Obj({"apiVersion": Str(64), "fieldPath": Str(256, min_length=1)}, ("fieldPath",))
RESOURCE_REF = Obj({"containerName": Str(63), "resource": Str(64, min_length=1),
                    "divisor": Quantity()}, ("resource",))
OBJECT_REF = Obj({"name": NAME, "optional": Bool()}, ("name",))
LABEL_SELECTOR = Obj({
    "matchLabels": Map(LABEL_VALUE, 64),
    "matchExpressions": List(Obj({
        "key": LABEL_KEY,
        "operator": Str(12, enum=("In", "NotIn", "Exists", "DoesNotExist")),
        "values": List(LABEL_VALUE, 64)}, ("key", "operator")), 16),
})

ENV_SOURCE = Obj({"secretKeyRef": KEY_REF, "configMapKeyRef": KEY_REF, "fieldRef": FIELD_REF,
                  "resourceFieldRef": RESOURCE_REF},
                 one_of=("secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef"))
"""An env var's valueFrom (env itself is one of the first fields: desired.py)."""


def _probe() -> Obj:
    return Obj({
        "httpGet": Obj({"path": Str(2048), "port": TARGET,
                        "scheme": Str(5, enum=("HTTP", "HTTPS")),
                        "httpHeaders": List(Obj({"name": Str(256, min_length=1),
                                                 "value": Str(4096)}, ("name", "value")), 16)},
                       ("port",)),
        "tcpSocket": Obj({"port": TARGET}, ("port",)),
        "exec": Obj({"command": List(Str(4096), 128)}),
        "initialDelaySeconds": Int(0),
        # 0 would be defaulted (to 1, 10, 1, 3): a value the server changes is drift for ever
        "timeoutSeconds": Int(1),
        "periodSeconds": Int(1),
        "successThreshold": Int(1),
        "failureThreshold": Int(1),
    }, one_of=("httpGet", "tcpSocket", "exec"))


CONTAINER: dict[str, Shape] = {
    "envFrom": List(Obj({"configMapRef": OBJECT_REF, "secretRef": OBJECT_REF,
                         "prefix": Str(256)}, one_of=("configMapRef", "secretRef")), 32),
    "livenessProbe": _probe(),
    "readinessProbe": _probe(),
    "startupProbe": _probe(),
    "volumeMounts": List(Obj({"name": Str(63, min_length=1), "mountPath": Str(4096, min_length=1),
                              "readOnly": Bool(), "subPath": PATH}, ("name", "mountPath")),
                         64, keys=("mountPath",)),
    "imagePullPolicy": Str(12, enum=("Always", "IfNotPresent", "Never")),
    "securityContext": Obj({
        "privileged": Bool(),
        "allowPrivilegeEscalation": Bool(),
        "capabilities": Obj({"add": List(Str(64, min_length=1), 32),
                             "drop": List(Str(64, min_length=1), 32)}),
        "runAsUser": ID,
        "runAsGroup": ID,
        "runAsNonRoot": Bool(),
        "readOnlyRootFilesystem": Bool(),
    }),
    "workingDir": PATH,
}
"""Spec fields rendered into the container, by their name there."""

_PROJECTION = Obj({
    "configMap": Obj({"name": NAME, "items": KEY_TO_PATH, "optional": Bool()}, ("name",)),
    "secret": Obj({"name": NAME, "items": KEY_TO_PATH, "optional": Bool()}, ("name",)),
    "downwardAPI": Obj({"items": List(Obj({"path": PATH, "fieldRef": FIELD_REF,
                                           "resourceFieldRef": RESOURCE_REF, "mode": MODE},
                                          ("path",), ("fieldRef", "resourceFieldRef")), 32)}),
}, one_of=("configMap", "secret", "downwardAPI"))
VOLUME_SOURCES = ("configMap", "secret", "emptyDir", "persistentVolumeClaim", "projected")

POD: dict[str, Shape] = {
    "volumes": List(Obj({
        "name": Str(63, min_length=1),
        "configMap": Obj({"name": NAME, "items": KEY_TO_PATH, "defaultMode": MODE,
                          "optional": Bool()}, ("name",)),
        "secret": Obj({"secretName": NAME, "items": KEY_TO_PATH, "defaultMode": MODE,
                       "optional": Bool()}, ("secretName",)),
        "emptyDir": Obj({"medium": Str(6, enum=("", "Memory")), "sizeLimit": Quantity()}),
        "persistentVolumeClaim": Obj({"claimName": NAME, "readOnly": Bool()}, ("claimName",)),
        "projected": Obj({"sources": List(_PROJECTION, 16), "defaultMode": MODE}),
    }, ("name",), VOLUME_SOURCES), 64, keys=("name",)),
    "serviceAccountName": NAME,
    "imagePullSecrets": List(Obj({"name": NAME}, ("name",)), 16, keys=("name",)),
    "nodeSelector": Map(LABEL_VALUE, 64),
    "tolerations": List(Obj({
        "key": LABEL_KEY,
        "operator": Str(6, enum=("Exists", "Equal")),
        "value": LABEL_VALUE,
        "effect": Str(16, enum=("NoSchedule", "PreferNoSchedule", "NoExecute")),
        "tolerationSeconds": Int(INT64[0], INT64[1]),
    }), 64),
    "affinity": Obj({"nodeAffinity": Opaque(), "podAffinity": Opaque(),
                     "podAntiAffinity": Opaque()}),
    "topologySpreadConstraints": List(Obj({
        "maxSkew": Int(1),
        "topologyKey": LABEL_KEY,
        "whenUnsatisfiable": Str(14, enum=("DoNotSchedule", "ScheduleAnyway")),
        "labelSelector": LABEL_SELECTOR,
    }, ("maxSkew", "topologyKey", "whenUnsatisfiable")), 16,
        keys=("topologyKey", "whenUnsatisfiable")),
    "priorityClassName": NAME,
    "podSecurityContext": Obj({
        "runAsUser": ID,
        "runAsGroup": ID,
        "runAsNonRoot": Bool(),
        "fsGroup": ID,
        "fsGroupChangePolicy": Str(14, enum=("OnRootMismatch", "Always")),
        "supplementalGroups": List(ID, 32),
    }),
    "terminationGracePeriodSeconds": SECONDS,
    "hostNetwork": Bool(only=False),
    "hostPID": Bool(only=False),
    "hostIPC": Bool(only=False),
}
"""Spec fields rendered into the pod template's spec (podSecurityContext as securityContext)."""
POD_NAMES = {"podSecurityContext": "securityContext"}

DEPLOYMENT: dict[str, Shape] = {
    "strategy": Obj({
        "type": Str(13, enum=("Recreate", "RollingUpdate")),
        "rollingUpdate": Obj({"maxSurge": IntOrStr(16), "maxUnavailable": IntOrStr(16)}),
    }),
    "minReadySeconds": Int(0),
    "progressDeadlineSeconds": Int(1),
    "revisionHistoryLimit": Int(0),
}
"""Spec fields rendered into the Deployment's spec."""

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
SERVICE = Obj({
    "type": Str(12, enum=SERVICE_TYPES),
    "ports": List(Obj({"name": PORT_NAME, "port": PORT, "targetPort": TARGET,
                       "protocol": PROTOCOL, "nodePort": PORT}, ("port",)), 64,
                  keys=("port", "protocol"), min_items=1),
    "annotations": Map(Str(4096), 64),
}, ("ports",))
"""spec.service: the Service beside the Deployment."""
