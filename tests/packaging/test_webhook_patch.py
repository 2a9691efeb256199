"""The webhook's decisions without a server: which pods change, and how the patch reads."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import jsonpatch
import pytest

from procfs_view import webhook
from procfs_view.webhook import (
    INJECTED_FILES,
    STATUS_ANNOTATION,
    STATUS_INJECTED,
    pod_patch,
    review,
)
from tests.packaging.manifests import VERSIONS, validate_strictly

MOUNT_DIR = webhook.DEFAULT_MOUNT_DIR


def make_pod(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": [{"name": "app", "image": "busybox"}]}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": body}


def patched(pod: dict[str, Any], mount_dir: str = MOUNT_DIR) -> dict[str, Any]:
    decision = pod_patch(copy.deepcopy(pod), mount_dir)
    assert decision.patch is not None, decision.reason
    result: dict[str, Any] = jsonpatch.apply_patch(pod, decision.patch)
    return result


def assert_injected(pod: dict[str, Any], mount_dir: str = MOUNT_DIR) -> None:
    """Every container and init container reads each file, read-only, from the mount."""
    spec = pod["spec"]
    sources = {v["name"]: v.get("hostPath", {}).get("path") for v in spec["volumes"]}
    assert len(sources) == len(spec["volumes"]), "duplicate volume names"
    host_paths = [path for path in sources.values() if path]
    assert len(set(host_paths)) == len(host_paths), "two volumes for one host path"
    for container in spec.get("initContainers", []) + spec["containers"]:
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert len(mounts) == len(container["volumeMounts"]), "duplicate mount paths"
        for relative in INJECTED_FILES:
            mount = mounts["/" + relative]
            assert sources[mount["name"]] == f"{mount_dir}/{relative}"
            assert mount.get("readOnly") is True or container["name"] == "keeps-own"
    assert pod["metadata"]["annotations"][STATUS_ANNOTATION] == STATUS_INJECTED
    for version in VERSIONS:
        validate_strictly(pod, version)


def test_plain_pod_gets_every_file_in_every_container() -> None:
    pod = make_pod(
        initContainers=[{"name": "init", "image": "busybox"}],
        containers=[{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}],
    )
    assert_injected(patched(pod))


def test_mount_dir_is_configurable() -> None:
    assert_injected(patched(make_pod(), "/run/procfs-view"), "/run/procfs-view")


def test_existing_volumes_mounts_and_annotations_are_kept() -> None:
    pod = make_pod(
        volumes=[{"name": "data", "emptyDir": {}}],
        containers=[
            {
                "name": "a",
                "image": "busybox",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ],
    )
    pod["metadata"]["annotations"] = {"team": "x"}
    result = patched(pod)
    assert_injected(result)
    assert result["spec"]["volumes"][0] == {"name": "data", "emptyDir": {}}
    assert result["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == "/data"
    assert result["metadata"]["annotations"]["team"] == "x"


def test_an_existing_volume_for_the_same_host_file_is_reused_not_duplicated() -> None:
    """A pod written for LXCFS by hand: its meminfo volume is reused, its mount kept."""
    lxcfs_volume = {"name": "lxcfs-meminfo", "hostPath": {"path": f"{MOUNT_DIR}/proc/meminfo"}}
    own_mount = {"name": "lxcfs-meminfo", "mountPath": "/proc/meminfo", "readOnly": True}
    pod = make_pod(
        volumes=[lxcfs_volume],
        containers=[
            {"name": "a", "image": "busybox", "volumeMounts": [own_mount]},
            {"name": "b", "image": "busybox"},
        ],
    )
    result = patched(pod)
    assert_injected(result)
    names = [v["name"] for v in result["spec"]["volumes"]]
    assert "procfs-view-proc-meminfo" not in names
    b_mounts = {m["mountPath"]: m["name"] for m in result["spec"]["containers"][1]["volumeMounts"]}
    assert b_mounts["/proc/meminfo"] == "lxcfs-meminfo"


def test_a_container_that_mounts_something_else_at_a_target_keeps_it() -> None:
    pod = make_pod(
        volumes=[{"name": "mine", "configMap": {"name": "fake-meminfo"}}],
        containers=[
            {
                "name": "keeps-own",
                "image": "busybox",
                "volumeMounts": [{"name": "mine", "mountPath": "/proc/meminfo/"}],
            }
        ],
    )
    result = patched(pod)
    mounts = result["spec"]["containers"][0]["volumeMounts"]
    assert [m["name"] for m in mounts if m["mountPath"].rstrip("/") == "/proc/meminfo"] == ["mine"]
    assert len(mounts) == len(INJECTED_FILES)
    for version in VERSIONS:
        validate_strictly(result, version)


def test_a_foreign_volume_with_our_name_leaves_that_file_out() -> None:
    pod = make_pod(volumes=[{"name": "procfs-view-proc-stat", "emptyDir": {}}])
    result = patched(pod)
    paths = {m["mountPath"] for m in result["spec"]["containers"][0]["volumeMounts"]}
    assert "/proc/stat" not in paths
    assert len(paths) == len(INJECTED_FILES) - 1
    assert [v for v in result["spec"]["volumes"] if v["name"] == "procfs-view-proc-stat"] == [
        {"name": "procfs-view-proc-stat", "emptyDir": {}}
    ]


@pytest.mark.parametrize("value", ["false", "False", " FALSE "])
def test_opted_out_pod_is_left_alone(value: str) -> None:
    pod = make_pod()
    pod["metadata"]["annotations"] = {"procfs-view.io/inject": value}
    decision = pod_patch(pod)
    assert decision.patch is None
    assert "opted out" in decision.reason


def test_already_injected_pod_is_not_injected_twice() -> None:
    once = patched(make_pod())
    decision = pod_patch(once)
    assert decision.patch is None
    assert "already injected" in decision.reason


def test_a_pod_that_already_has_every_mount_needs_no_patch() -> None:
    pod = make_pod(volumes=webhook.volumes())
    pod["spec"]["containers"][0]["volumeMounts"] = webhook.volume_mounts()
    assert pod_patch(pod).patch is None


def test_windows_pods_are_skipped() -> None:
    assert pod_patch(make_pod(os={"name": "windows"})).patch is None


def test_user_namespace_pods_are_skipped() -> None:
    """hostUsers: false makes the runtime idmap every volume, which our FUSE mount
    refuses: injecting would stop the pod from starting."""
    decision = pod_patch(make_pod(hostUsers=False))
    assert decision.patch is None
    assert "user namespace" in decision.reason
    assert pod_patch(make_pod(hostUsers=True)).patch is not None


def test_pod_without_metadata_or_annotations_gets_them() -> None:
    pod = make_pod()
    del pod["metadata"]
    decision = pod_patch(pod)
    assert decision.patch is not None
    result = jsonpatch.apply_patch(pod, decision.patch)
    assert result["metadata"]["annotations"] == {STATUS_ANNOTATION: STATUS_INJECTED}


@pytest.mark.parametrize(
    "pod",
    [
        [],
        {"spec": []},
        {"metadata": {}, "spec": {"containers": "app"}},
        {"metadata": {}, "spec": {"containers": []}},
        {"metadata": {"annotations": []}, "spec": {"containers": [{"name": "a"}]}},
        {"metadata": {}, "spec": {"containers": [{"name": "a", "volumeMounts": {}}]}},
    ],
)
def test_shapes_we_do_not_understand_raise(pod: Any) -> None:
    with pytest.raises(webhook.NotUnderstood):
        pod_patch(pod)


def admission_review(obj: Any, **request: Any) -> bytes:
    body = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "apps",
        "operation": "CREATE",
        "object": obj,
    }
    body.update(request)
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": body}
    ).encode()


def test_review_answers_with_a_base64_jsonpatch() -> None:
    status, answer = review(admission_review(make_pod()))
    assert status == 200
    response = answer["response"]
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert_injected(
        jsonpatch.apply_patch(make_pod(), json.loads(base64.b64decode(response["patch"])))
    )


@pytest.mark.parametrize(
    "request_fields",
    [
        {"operation": "UPDATE"},
        {"subResource": "status"},
        {"kind": {"group": "apps", "version": "v1", "kind": "Deployment"}},
        {"object": "not a pod"},
    ],
)
def test_review_admits_anything_else_unchanged(request_fields: dict[str, Any]) -> None:
    status, answer = review(admission_review(make_pod(), **request_fields))
    assert status == 200
    assert answer["response"]["allowed"] is True
    assert "patch" not in answer["response"]


def test_review_of_another_admission_version_is_admitted_unchanged() -> None:
    document = json.loads(admission_review(make_pod()))
    document["apiVersion"] = "admission.k8s.io/v1beta1"
    status, answer = review(json.dumps(document).encode())
    assert (status, answer["response"]["allowed"]) == (200, True)
    assert "patch" not in answer["response"]


@pytest.mark.parametrize(
    "body",
    [b"", b"{not json", b"\xff\xfe", b"[]", b'{"request": {}}', b'{"request": {"uid": 7}}',
     b"[" * 100_000],  # nested too deep for the JSON parser
)  # fmt: skip
def test_malformed_bodies_get_400_with_allowed(body: bytes) -> None:
    """No uid, no AdmissionReview answer: 400 (failurePolicy Ignore admits the pod)."""
    status, answer = review(body)
    assert status == 400
    assert answer["response"]["allowed"] is True
    assert answer["response"]["status"]["code"] == 400


def test_a_pod_of_a_shape_we_do_not_understand_is_admitted_unchanged() -> None:
    """An unhashable volume name (a map where a string goes): 200, allowed, no patch; not a
    500 from the server."""
    pod = make_pod(volumes=[{"name": {"not": "a string"}, "emptyDir": {}}])
    status, answer = review(admission_review(pod))
    assert status == 200
    assert answer["response"]["allowed"] is True
    assert "patch" not in answer["response"]
