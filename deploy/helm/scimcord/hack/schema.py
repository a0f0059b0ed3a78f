#!/usr/bin/env python3
"""Writes values.schema.json (run from the chart directory: python3 hack/schema.py).

The schema is closed (additionalProperties: false) wherever the chart owns the
keys, so a misspelt key fails `helm lint/template/install`; Kubernetes objects
passed through (resources, probes, affinity, peers…) stay open.
"""
import json

def obj(props, required=(), desc=None, open_=False):
    o = {"type": "object", "properties": props, "additionalProperties": open_}
    if required:
        o["required"] = list(required)
    if desc:
        o["description"] = desc
    return o

def s(desc=None, **kw):
    o = {"type": "string", **kw}
    if desc: o["description"] = desc
    return o

def b(desc=None):
    o = {"type": "boolean"}
    if desc: o["description"] = desc
    return o

def i(desc=None, minimum=None, maximum=None):
    o = {"type": "integer"}
    if minimum is not None: o["minimum"] = minimum
    if maximum is not None: o["maximum"] = maximum
    if desc: o["description"] = desc
    return o

def num(desc=None, minimum=None):
    o = {"type": "number"}
    if minimum is not None: o["minimum"] = minimum
    if desc: o["description"] = desc
    return o

strmap = {"type": "object", "additionalProperties": {"type": "string"}}
anyobj = {"type": "object"}
anylist = {"type": "array", "items": {"type": "object"}}
port = i("TCP port", 1, 65535)
k8sname = s("a Kubernetes object name (empty: see values.yaml)", pattern="^$|^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", maxLength=253)
probe = {"type": "object", "description": "probe timings (the handler is set by the chart)",
         "properties": {k: i(minimum=0) for k in ["initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold", "terminationGracePeriodSeconds"]},
         "additionalProperties": False}
resources = {"type": "object", "properties": {"requests": anyobj, "limits": anyobj, "claims": anylist}, "additionalProperties": False}
image_override = obj({"repository": s(), "tag": s()})
autoscaling = obj({"enabled": b(), "minReplicas": i(minimum=1), "maxReplicas": i(minimum=1), "targetCPUUtilizationPercentage": i(minimum=1, maximum=100)})
pdb = obj({"maxUnavailable": {"oneOf": [i(minimum=1), s(pattern="^[0-9]+%$")]}})
action = lambda: {"type": "string", "enum": ["strip", "kick", "ban", "none"]}
snowflake = s("a Discord snowflake, quoted", pattern="^[0-9]{17,20}$")

def service(kind):
    p = {
        "replicas": i(minimum=1),
        "image": image_override,
        "port": port,
        "resources": resources,
        "pdb": pdb,
        "livenessProbe": probe, "readinessProbe": probe, "startupProbe": probe,
        "extraEnv": anylist,
        "nodeSelector": strmap, "tolerations": anylist, "affinity": anyobj,
        "topologySpreadConstraints": anylist,
        "terminationGracePeriodSeconds": i(minimum=0),
    }
    if kind in ("ingest", "mapping"):
        p["autoscaling"] = autoscaling
        p["preStopSleepSeconds"] = i("seconds", 0, 60)
    if kind == "ingest":
        p["service"] = obj({"type": s(enum=["ClusterIP", "NodePort", "LoadBalancer"]), "port": port, "annotations": strmap})
    if kind == "mapping":
        p["service"] = obj({"port": port, "annotations": strmap})
    if kind == "applier":
        p["mappingAddr"] = s("host:port", pattern="^$|^[^\\s:]+:[0-9]{1,5}$")
    return obj(p, required=["replicas", "port", "resources"])

peers = {"type": "array", "items": {"type": "object", "properties": {"podSelector": anyobj, "namespaceSelector": anyobj, "ipBlock": anyobj}, "additionalProperties": False}}
ports = {"type": "array", "items": port}

schema = {
    "$schema": "https://json-schema.org/draft-07/schema#",
    "title": "scimcord chart values",
    **obj({
        "global": anyobj,
        "nameOverride": s(), "fullnameOverride": s(), "commonLabels": strmap,
        "image": obj({"registry": s(), "repository": s(minLength=1), "tag": s(), "pullPolicy": s(enum=["Always", "IfNotPresent", "Never"])}, required=["repository"]),
        "imagePullSecrets": {"type": "array", "items": obj({"name": s(minLength=1)}, required=["name"])},
        "serviceAccount": obj({"create": b(), "name": s(), "annotations": strmap, "automountToken": b()}),
        "nats": obj({
            "url": s("NATS_URL", pattern="^$|^(nats|tls|ws|wss)://"),
            "replicas": i("stream/KV replicas", 1, 5),
            "credentials": obj({"existingSecret": k8sname, "key": s(minLength=1)}),
        }, required=["url", "replicas"]),
        "tenants": obj({
            "existingSecret": k8sname, "key": s(minLength=1),
            "items": {"type": "array", "items": obj({
                "id": s(pattern="^[A-Za-z0-9_-]{1,64}$"),
                "name": s(),
                "token_sha256": {"type": "array", "items": {"type": "string"}, "description": "hex SHA-256 of each valid token (checked by the chart)"},
                "guilds": {"type": "array", "items": obj({"id": snowflake, "on_deactivate": action(), "on_delete": action()}, required=["id"])},
            }, required=["id", "token_sha256"])},
        }),
        "discord": obj({"existingSecret": k8sname, "key": s(minLength=1), "botToken": s(), "globalRps": i(minimum=1, maximum=50)}),
        "admin": obj({"enabled": b(), "existingSecret": k8sname, "key": s(minLength=1),
                      # ingest refuses an admin token shorter than 16 characters (services/ingest/admin)
                      "token": {"type": "string", "anyOf": [{"maxLength": 0}, {"minLength": 16}],
                                "description": "empty, or at least 16 characters"}}),
        "rules": obj({"existingConfigMap": k8sname, "key": s(minLength=1), "content": {"type": ["object", "string", "null"]}}),
        "observability": obj({
            "logLevel": s(enum=["debug", "info", "warn", "error"]),
            "metricsPort": port,
            "otlp": obj({"enabled": b(), "endpoint": s(), "protocol": s(enum=["grpc", "http/protobuf", "http/json"]), "insecure": b(), "sampler": s(), "samplerArg": s()}),
        }),
        "podSecurityContext": anyobj,
        "containerSecurityContext": anyobj,
        "topologySpread": obj({"enabled": b(), "maxSkew": i(minimum=1),
                               "zoneWhenUnsatisfiable": s(enum=["ScheduleAnyway", "DoNotSchedule"]),
                               "nodeWhenUnsatisfiable": s(enum=["ScheduleAnyway", "DoNotSchedule"])}),
        "podAnnotations": strmap, "podLabels": strmap, "priorityClassName": s(),
        "ingest": service("ingest"),
        "mapping": service("mapping"),
        "applier": service("applier"),
        "ingress": obj({"enabled": b(), "className": s(), "annotations": strmap, "host": s(),
                        "paths": {"type": "array", "items": s(pattern="^/"), "minItems": 1},
                        "tls": obj({"enabled": b(), "secretName": k8sname})}),
        "httpRoute": obj({"enabled": b(), "parentRefs": anylist, "hostnames": {"type": "array", "items": s()},
                          "paths": {"type": "array", "items": s(pattern="^/"), "minItems": 1}, "annotations": strmap}),
        "networkPolicy": obj({
            "enabled": b(), "ingestFrom": peers, "metricsFrom": peers,
            "dns": obj({"to": peers, "nodeLocalDNS": obj({"enabled": b(), "cidrs": {"type": "array", "items": s(pattern="^[0-9a-fA-F.:]+/[0-9]{1,3}$"), "minItems": 1}})}),
            "nats": obj({"to": peers, "ports": ports}),
            "otlp": obj({"to": peers, "ports": ports}),
            "discord": obj({"to": peers}),
            "extraEgress": anylist,
        }),
        "metrics": obj({
            "serviceMonitor": obj({"enabled": b(), "interval": s(pattern="^[0-9]+(ms|s|m|h)$"), "scrapeTimeout": s(pattern="^[0-9]+(ms|s|m|h)$"), "labels": strmap}),
            "prometheusRule": obj({"enabled": b(), "labels": strmap, "alertLabels": strmap,
                                   "thresholds": obj({"deadLetters15m": num(minimum=0), "failedMembers": num(minimum=0), "discord429PerSecond": num(minimum=0),
                                                      "consumerLag": num(minimum=0), "invalidRequests10m": num(minimum=0),
                                                      "scimUnauthorizedPerSecond": num(minimum=0), "scimInvalidRatio": num(minimum=0)})}),
            "dashboard": obj({"enabled": b(), "labels": strmap, "annotations": strmap}),
        }),
        "tests": obj({"enabled": b(), "curlImage": s(minLength=1), "grpcurlImage": s(minLength=1),
                      "scimToken": obj({"existingSecret": k8sname, "key": s(minLength=1), "value": s()}),
                      "resources": resources}),
    }, required=["image", "nats", "tenants", "discord", "rules", "ingest", "mapping", "applier"]),
}
with open("values.schema.json", "w") as f:
    json.dump(schema, f, indent=2)
    f.write("\n")
