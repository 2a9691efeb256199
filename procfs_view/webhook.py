"""The admission webhook's decisions: which pods get the procfs-view files, and the JSONPatch.

Pure functions over decoded JSON, no I/O, so every case is testable without a server
(``webhook_server`` is the HTTP/TLS layer around ``review``). Anything not understood is
admitted unchanged: the webhook must never be the reason a pod cannot start.

Namespace selection is not done here. An AdmissionReview carries the pod's namespace name
but not that namespace's labels; the API server evaluates the
MutatingWebhookConfiguration's ``namespaceSelector`` (``procfs-view.io/inject=enabled`` or
``lxcfs-admission-webhook=enabled``, see packaging/kubernetes/webhook.yaml) and only calls
us for selected namespaces.
"""

from __future__ import annotations

import base64
import json
import logging
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MOUNT_DIR = "/var/lib/lxcfs"
# The namespace labels the MutatingWebhookConfiguration selects on (ours, and LXCFS
# add-ons' so users can switch without relabelling).
NAMESPACE_LABELS = {"procfs-view.io/inject": "enabled", "lxcfs-admission-webhook": "enabled"}
OPT_OUT_ANNOTATION = "procfs-view.io/inject"
STATUS_ANNOTATION = "procfs-view.io/status"
STATUS_INJECTED = "injected"
# What LXCFS add-ons bind into pods. Not proc/pressure/*: the daemon serves those only on
# hosts with cgroup v2 controllers (a missing hostPath of type File keeps the pod from
# starting), and runc refuses mounts under /proc outside its list of LXCFS's files
# (checkProcMount in libcontainer/rootfs_linux.go).
INJECTED_FILES = (
    "proc/cpuinfo",
    "proc/diskstats",
    "proc/loadavg",
    "proc/meminfo",
    "proc/stat",
    "proc/swaps",
    "proc/uptime",
    "sys/devices/system/cpu/online",
)
ADMISSION_API_VERSION = "admission.k8s.io/v1"
CONTAINER_LISTS = ("initContainers", "containers")

JSON = Any
Patch = list[dict[str, JSON]]


def volume_name(relative: str) -> str:
    """``proc/meminfo`` -> ``procfs-view-proc-meminfo`` (a DNS label, <= 63 chars)."""
    return "procfs-view-" + relative.replace("/", "-")


def volumes(mount_dir: str = DEFAULT_MOUNT_DIR) -> list[dict[str, JSON]]:
    """One hostPath volume per file; ``type: File`` so a pod scheduled before the daemon
    mounted waits instead of getting an empty directory bound over /proc/meminfo."""
    return [
        {
            "name": volume_name(relative),
            "hostPath": {"path": posixpath.join(mount_dir, relative), "type": "File"},
        }
        for relative in INJECTED_FILES
    ]


def volume_mounts() -> list[dict[str, JSON]]:
    """Each file read-only over its original path."""
    return [
        {"name": volume_name(relative), "mountPath": "/" + relative, "readOnly": True}
        for relative in INJECTED_FILES
    ]


class NotUnderstood(Exception):
    """The request or object has a shape we do not handle; admit it unchanged."""


@dataclass(frozen=True)
class Decision:
    """What to answer: the patch (None = admit unchanged) and why, for the log."""

    patch: Patch | None
    reason: str


def _pointer(token: str) -> str:
    """RFC 6901 escaping of one JSON Pointer token."""
    return token.replace("~", "~0").replace("/", "~1")


def _mapping(value: JSON, what: str) -> dict[str, JSON]:
    if not isinstance(value, dict):
        raise NotUnderstood(f"{what} is not an object")
    return value


def _list_of_mappings(value: JSON, what: str) -> list[dict[str, JSON]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise NotUnderstood(f"{what} is not a list of objects")
    return value


def _normal(path: JSON) -> str:
    return posixpath.normpath(path) if isinstance(path, str) and path else ""


def _opted_out(annotations: Mapping[str, JSON]) -> bool:
    value = annotations.get(OPT_OUT_ANNOTATION)
    return isinstance(value, str) and value.strip().lower() == "false"


def pod_patch(pod: JSON, mount_dir: str = DEFAULT_MOUNT_DIR) -> Decision:
    """The JSONPatch that adds the volumes and read-only mounts to ``pod``, or why not.

    Never duplicates: a file whose host path is already a volume reuses that volume, and
    a container that already mounts something at a target path keeps its own mount.

    Raises:
        NotUnderstood: the pod does not look like a v1 Pod.
    """
    pod = _mapping(pod, "the object")
    metadata = _mapping(pod.get("metadata", {}), "metadata")
    spec = _mapping(pod.get("spec"), "spec")
    raw_annotations = metadata.get("annotations")
    annotations = _mapping(
        {} if raw_annotations is None else raw_annotations, "metadata.annotations"
    )
    if _opted_out(annotations):
        return Decision(None, f"opted out ({OPT_OUT_ANNOTATION}: false)")
    if annotations.get(STATUS_ANNOTATION) == STATUS_INJECTED:
        return Decision(None, f"already injected ({STATUS_ANNOTATION})")
    os_name = _mapping(spec.get("os") or {}, "spec.os").get("name")
    if os_name not in (None, "linux"):
        return Decision(None, f"not a Linux pod (spec.os.name {os_name})")
    if spec.get("hostUsers") is False:
        # A user-namespace pod's volumes are idmapped binds, which a FUSE mount refuses:
        # its runtime would fail to create the pod.
        return Decision(None, "in a user namespace (spec.hostUsers: false)")

    if not _list_of_mappings(spec.get("containers"), "spec.containers"):
        raise NotUnderstood("spec.containers is empty")
    existing_volumes = _list_of_mappings(spec.get("volumes"), "spec.volumes")
    by_host_path: dict[str, str] = {}
    for volume in existing_volumes:
        host_path = volume.get("hostPath")
        if isinstance(host_path, dict) and isinstance(volume.get("name"), str):
            by_host_path.setdefault(_normal(host_path.get("path")), volume["name"])
    taken_names = {volume.get("name") for volume in existing_volumes}

    patch: Patch = []
    new_volumes: list[dict[str, JSON]] = []
    mounts: list[dict[str, JSON]] = []
    for volume, mount in zip(volumes(mount_dir), volume_mounts(), strict=True):
        reused = by_host_path.get(_normal(volume["hostPath"]["path"]))
        if reused is not None:
            mounts.append({**mount, "name": reused})
        elif volume["name"] in taken_names:
            # The pod already has a different volume under our name; leave that file out.
            continue
        else:
            new_volumes.append(volume)
            mounts.append(mount)

    for field in CONTAINER_LISTS:
        containers = _list_of_mappings(spec.get(field), f"spec.{field}")
        for index, container in enumerate(containers):
            existing = _list_of_mappings(
                container.get("volumeMounts"), f"spec.{field}[{index}].volumeMounts"
            )
            occupied = {_normal(item.get("mountPath")) for item in existing}
            missing = [mount for mount in mounts if _normal(mount["mountPath"]) not in occupied]
            if not missing:
                continue
            base = f"/spec/{field}/{index}/volumeMounts"
            if "volumeMounts" not in container or container["volumeMounts"] is None:
                patch.append({"op": "add", "path": base, "value": missing})
            else:
                patch.extend({"op": "add", "path": f"{base}/-", "value": m} for m in missing)
    if not patch:
        return Decision(None, "every container already mounts the files")

    used = {op_mount["name"] for op in patch for op_mount in _op_mounts(op)}
    new_volumes = [volume for volume in new_volumes if volume["name"] in used]
    if new_volumes:
        if spec.get("volumes") is None:
            patch.insert(0, {"op": "add", "path": "/spec/volumes", "value": new_volumes})
        else:
            patch[:0] = [{"op": "add", "path": "/spec/volumes/-", "value": v} for v in new_volumes]

    if "metadata" not in pod:
        status_ops: Patch = [
            {"op": "add", "path": "/metadata", "value": {"annotations": {}}},
        ]
    elif raw_annotations is None:
        status_ops = [{"op": "add", "path": "/metadata/annotations", "value": {}}]
    else:
        status_ops = []
    status_ops.append(
        {
            "op": "add",
            "path": f"/metadata/annotations/{_pointer(STATUS_ANNOTATION)}",
            "value": STATUS_INJECTED,
        }
    )
    patch.extend(status_ops)
    count = sum(len(spec.get(field) or []) for field in CONTAINER_LISTS)
    return Decision(patch, f"injected into {count} container(s)")


def _op_mounts(op: Mapping[str, JSON]) -> list[dict[str, JSON]]:
    value = op["value"]
    return value if isinstance(value, list) else [value]


def review(body: bytes, mount_dir: str = DEFAULT_MOUNT_DIR) -> tuple[int, dict[str, JSON]]:
    """Answer one AdmissionReview v1 request body: (HTTP status, response document).

    A request we can parse gets 200 and ``allowed: true``, with a patch only for a pod
    we understand. A body without a request uid cannot be answered as an AdmissionReview
    (the API server matches answers by uid): 400, which the API server treats as a failed
    call and, with ``failurePolicy: Ignore``, admits the pod unchanged.
    """
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:  # nested too deep
        return 400, _failure(f"the body is not JSON: {error}")
    request = document.get("request") if isinstance(document, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    if not isinstance(request, dict) or not isinstance(uid, str) or not uid:
        return 400, _failure("not an AdmissionReview: no request.uid")
    response: dict[str, JSON] = {"uid": uid, "allowed": True}
    answer = {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}
    where = _describe(request)
    try:
        decision = _decide(document, request, mount_dir)
    except (NotUnderstood, TypeError, ValueError, KeyError, AttributeError) as error:
        # Any shape we do not understand (an unhashable volume name, a list where a map
        # goes) admits the pod unchanged, never a 500 the API server retries.
        log.warning("%s: admitted unchanged: %s", where, error)
        return 200, answer
    log.info("%s: %s", where, decision.reason)
    if decision.patch is not None:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(decision.patch).encode()).decode()
    return 200, answer


def _decide(document: dict[str, JSON], request: dict[str, JSON], mount_dir: str) -> Decision:
    if document.get("apiVersion") != ADMISSION_API_VERSION:
        raise NotUnderstood(f"apiVersion {document.get('apiVersion')!r}, not v1")
    kind = request.get("kind")
    if not isinstance(kind, dict) or (kind.get("group"), kind.get("kind")) != ("", "Pod"):
        return Decision(None, f"not a Pod ({kind})")
    if request.get("subResource"):
        return Decision(None, f"subresource {request['subResource']}")
    if request.get("operation") != "CREATE":
        return Decision(None, f"operation {request.get('operation')}, not CREATE")
    return pod_patch(request.get("object"), mount_dir)


def _describe(request: Mapping[str, JSON]) -> str:
    obj = request.get("object")
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    name = request.get("name") or (
        metadata.get("name") or metadata.get("generateName") if isinstance(metadata, dict) else None
    )
    return f"{request.get('namespace') or '-'}/{name or '?'} ({request.get('uid')})"


def _failure(message: str) -> dict[str, JSON]:
    log.warning("bad admission request: %s", message)
    return {
        "apiVersion": ADMISSION_API_VERSION,
        "kind": "AdmissionReview",
        "response": {"uid": "", "allowed": True, "status": {"code": 400, "message": message}},
    }
