"""packaging/kubernetes: every manifest validates strictly (Kubernetes 1.30 and the newest the
validator knows), and the pieces fit together (names, ports, labels, the injected files)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from procfs_view import webhook
from procfs_view.webhook_server import HEALTH_PATH, MUTATE_PATH
from tests.packaging.manifests import (
    KUBERNETES,
    MANIFESTS,
    NO_SCHEMA_GROUPS,
    VERSIONS,
    documents,
    find,
    selector_matches,
    validate_strictly,
)

VALIDATOR = Path(sys.executable).parent / "kubernetes-validate"


def test_the_manifests_are_there() -> None:
    names = {path.name for path in MANIFESTS}
    assert names == {"daemonset.yaml", "example-pod.yaml", "webhook.yaml"}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda path: path.name)
def test_cli_validates_strictly(manifest: Path, version: str) -> None:
    """The command users run: exit 0 and no ERROR line."""
    result = subprocess.run(
        [str(VALIDATOR), "--strict", "-k", version, str(manifest)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout + result.stderr


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda path: path.name)
def test_every_document_has_a_schema_and_passes(manifest: Path, version: str) -> None:
    """The CLI only warns about kinds it has no schema for: only cert-manager's may lack one."""
    for doc in documents(manifest):
        try:
            validate_strictly(doc, version)
        except kubernetes_validate.SchemaNotFoundError:
            assert doc["apiVersion"].startswith(NO_SCHEMA_GROUPS), doc["kind"]


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec.get("initContainers", [])) + list(pod_spec["containers"])


def test_daemonset_runs_privileged_on_every_node_with_a_liveness_check() -> None:
    docs = documents(KUBERNETES / "daemonset.yaml")
    namespace = find(docs, "Namespace")["metadata"]["name"]
    account = find(docs, "ServiceAccount")
    daemonset = find(docs, "DaemonSet")
    assert account["metadata"]["namespace"] == daemonset["metadata"]["namespace"] == namespace
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert spec["hostPID"] is True
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in spec["tolerations"]
    (container,) = spec["containers"]
    assert container["securityContext"]["privileged"] is True
    assert set(container["resources"]) == {"requests", "limits"}
    # The daemon mounts the node's /var/lib/lxcfs through the node's /var/lib: a dead mount
    # left there by an unclean death cannot be a volume source (nothing can stat it), and
    # kubelet restarts a container in place without init containers; through the parent
    # the daemon's own start detaches it.
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    by_host_path = {host_paths[name]: mount for name, mount in mounts.items()}
    assert set(by_host_path) == {"/sys/fs/cgroup", "/var/lib", "/run/procfs-view"}
    # The pidfile and its record of past mounts (which dead binds are ours) outlive the
    # container: on the node.
    runtime_dir = container["args"][container["args"].index("--runtime-dir") + 1]
    assert by_host_path["/run/procfs-view"]["mountPath"] == runtime_dir
    assert by_host_path["/sys/fs/cgroup"]["mountPath"] == "/sys/fs/cgroup"
    parent = by_host_path["/var/lib"]
    assert parent["mountPropagation"] == "Bidirectional"
    assert webhook.DEFAULT_MOUNT_DIR.startswith("/var/lib/")
    mountpoint = parent["mountPath"] + webhook.DEFAULT_MOUNT_DIR.removeprefix("/var/lib")
    assert container["args"][-1] == mountpoint
    assert container["livenessProbe"]["exec"]["command"] == ["procfs-view", "check", mountpoint]
    assert "initContainers" not in spec


def test_example_pod_mounts_exactly_what_the_webhook_injects() -> None:
    (pod,) = documents(KUBERNETES / "example-pod.yaml")
    assert pod["spec"]["volumes"] == webhook.volumes()
    for container in _containers(pod["spec"]):
        assert container["volumeMounts"] == webhook.volume_mounts()
    sources = {v["hostPath"]["path"] for v in pod["spec"]["volumes"]}
    assert sources == {f"{webhook.DEFAULT_MOUNT_DIR}/{f}" for f in webhook.INJECTED_FILES}


def test_injected_files_are_served_by_the_daemon() -> None:
    from procfs_view.registry import BY_PATH

    assert set(webhook.INJECTED_FILES) <= set(BY_PATH)
    assert "proc/meminfo" in webhook.INJECTED_FILES
    assert "sys/devices/system/cpu/online" in webhook.INJECTED_FILES


def _webhook_docs() -> list[dict[str, Any]]:
    return documents(KUBERNETES / "webhook.yaml")


def test_webhook_configuration_is_safe_for_the_cluster() -> None:
    config = find(_webhook_docs(), "MutatingWebhookConfiguration")
    assert config["webhooks"]
    for hook in config["webhooks"]:
        assert hook["failurePolicy"] == "Ignore"
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert 1 <= hook["timeoutSeconds"] <= 5
        assert hook["reinvocationPolicy"] == "Never"
        (rule,) = hook["rules"]
        assert rule["operations"] == ["CREATE"]
        assert rule["resources"] == ["pods"]
        assert rule["apiGroups"] == [""]


@pytest.mark.parametrize(
    ("labels", "selected"),
    [
        ({"procfs-view.io/inject": "enabled"}, True),
        ({"lxcfs-admission-webhook": "enabled"}, True),
        ({"procfs-view.io/inject": "enabled", "lxcfs-admission-webhook": "enabled"}, True),
        ({}, False),
        ({"kubernetes.io/metadata.name": "default"}, False),
        ({"procfs-view.io/inject": "disabled"}, False),
        ({"lxcfs-admission-webhook": "disabled"}, False),
    ],
)
def test_only_labelled_namespaces_are_sent_to_the_webhook(
    labels: dict[str, str], selected: bool
) -> None:
    """AdmissionReviews carry no namespace labels: the API server's namespaceSelector
    (evaluated here as it does) is what keeps unlabelled namespaces away from us."""
    config = find(_webhook_docs(), "MutatingWebhookConfiguration")
    calling = [
        h["name"] for h in config["webhooks"] if selector_matches(h["namespaceSelector"], labels)
    ]
    assert bool(calling) is selected, calling
    for key, value in webhook.NAMESPACE_LABELS.items():
        assert any(
            h["namespaceSelector"].get("matchLabels") == {key: value} for h in config["webhooks"]
        )


def test_webhook_service_deployment_and_certificate_fit_together() -> None:
    docs = _webhook_docs()
    config = find(docs, "MutatingWebhookConfiguration")
    service = find(docs, "Service")
    deployment = find(docs, "Deployment")
    certificate = find(docs, "Certificate")
    issuer = find(docs, "Issuer")
    namespace = service["metadata"]["namespace"]
    service_name = service["metadata"]["name"]
    for hook in config["webhooks"]:
        target = hook["clientConfig"]["service"]
        assert (target["name"], target["namespace"]) == (service_name, namespace)
        assert target["path"] == MUTATE_PATH
        assert target["port"] == service["spec"]["ports"][0]["port"]
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    assert container["args"][0] == "webhook"
    assert container["readinessProbe"]["httpGet"]["path"] == HEALTH_PATH
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    port_names = {p["name"] for p in container["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in port_names
    # cert-manager: the CA injected comes from the Certificate whose Secret the pod mounts.
    annotation = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    assert annotation == f"{namespace}/{certificate['metadata']['name']}"
    assert certificate["metadata"]["namespace"] == issuer["metadata"]["namespace"] == namespace
    assert certificate["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"]
    assert f"{service_name}.{namespace}.svc" in certificate["spec"]["dnsNames"]
    secrets = {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
    assert certificate["spec"]["secretName"] in secrets
    args = dict(arg.removeprefix("--").split("=", 1) for arg in container["args"][1:])
    mount_path = next(m["mountPath"] for m in container["volumeMounts"])
    assert args["tls-cert"] == f"{mount_path}/tls.crt"
    assert args["tls-key"] == f"{mount_path}/tls.key"
    # The webhook must not inject into its own namespace (nor depend on itself to start).
    namespace_doc = find(documents(KUBERNETES / "daemonset.yaml"), "Namespace")
    labels = namespace_doc["metadata"].get("labels", {})
    assert not any(selector_matches(h["namespaceSelector"], labels) for h in config["webhooks"])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_self_signed_alternative_builds_a_valid_manifest(tmp_path: Path) -> None:
    script = KUBERNETES / "self-signed-certs.sh"
    result = subprocess.run(
        ["bash", str(script), "--print"], capture_output=True, text=True, check=True
    )
    manifest = tmp_path / "self-signed.yaml"
    manifest.write_text(result.stdout)
    docs = documents(manifest)
    assert not [d for d in docs if d["apiVersion"].startswith(NO_SCHEMA_GROUPS)]
    for version in VERSIONS:
        for doc in docs:
            validate_strictly(doc, version)
    secret = find(docs, "Secret")
    deployment = find(docs, "Deployment")
    assert {
        v["secret"]["secretName"] for v in deployment["spec"]["template"]["spec"]["volumes"]
    } == {secret["metadata"]["name"]}
    ca = base64.b64decode(secret["data"]["ca.crt"])
    config = find(docs, "MutatingWebhookConfiguration")
    for hook in config["webhooks"]:
        assert base64.b64decode(hook["clientConfig"]["caBundle"]) == ca
    (tmp_path / "ca.crt").write_bytes(ca)
    (tmp_path / "tls.crt").write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    service = find(docs, "Service")
    dns = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    verified = subprocess.run(
        [
            "openssl",
            "verify",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            dns,
            "-CAfile",
            str(tmp_path / "ca.crt"),
            str(tmp_path / "tls.crt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
