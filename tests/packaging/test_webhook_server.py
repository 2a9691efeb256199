"""The real ``procfs-view webhook`` process on loopback over TLS (certificates from trustme):
AdmissionReview v1 round trips, plain HTTP refused, certificates reloaded when replaced.

Unlabelled namespaces never reach the server (the API server applies the
namespaceSelector); test_kubernetes_manifests checks that selector.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import trustme

from procfs_view.webhook_server import MAX_BODY
from tests.packaging.test_webhook_patch import admission_review, assert_injected, make_pod

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 60.0  # a guard against a hung start, not a measurement


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int
    ca: trustme.CA

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def connection(self, ca: trustme.CA | None = None) -> http.client.HTTPSConnection:
        context = ssl.create_default_context()
        (ca or self.ca).configure_trust(context)
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=30)

    def post(self, body: bytes, path: str = "/mutate") -> tuple[int, dict[str, Any]]:
        connection = self.connection()
        try:
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()


def write_pair(ca: trustme.CA, directory: Path) -> tuple[Path, Path]:
    """A serving certificate for 127.0.0.1, written atomically (as a Secret update is)."""
    issued = ca.issue_cert("127.0.0.1", "procfs-view-webhook.procfs-view.svc")
    cert, key = directory / "tls.crt", directory / "tls.key"
    for target, data in (
        (cert, b"".join(blob.bytes() for blob in issued.cert_chain_pems)),
        (key, issued.private_key_pem.bytes()),
    ):
        staging = target.with_suffix(".new")
        staging.write_bytes(data)
        os.replace(staging, target)
    return cert, key


@contextlib.contextmanager
def running_server(directory: Path, *extra: str) -> Iterator[Server]:
    ca = trustme.CA()
    cert, key = write_pair(ca, directory)
    log_path = directory / "webhook.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "procfs_view", "webhook", "--listen", "127.0.0.1:0"]
    argv += ["--tls-cert", str(cert), "--tls-key", str(key), *extra]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not (found := re.search(r"listening on https://127\.0\.0\.1:(\d+)", _read(log_path))):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"webhook did not start:\n{_read(log_path)}")
            time.sleep(0.02)
        yield Server(process, log_path, int(found.group(1)), ca)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STARTUP_TIMEOUT) == 0, _read(log_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("webhook")) as started:
        yield started


def mutate(server: Server, pod: dict[str, Any]) -> dict[str, Any] | None:
    """POST a CREATE review for ``pod``; the patched pod, or None when left unchanged."""
    status, answer = server.post(admission_review(copy.deepcopy(pod)))
    assert status == 200
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert response["allowed"] is True
    if "patch" not in response:
        return None
    assert response["patchType"] == "JSONPatch"
    result: dict[str, Any] = jsonpatch.apply_patch(
        pod, json.loads(base64.b64decode(response["patch"]))
    )
    return result


def test_plain_pod_is_injected(server: Server) -> None:
    pod = make_pod(
        initContainers=[{"name": "init", "image": "busybox"}],
        containers=[{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}],
    )
    result = mutate(server, pod)
    assert result is not None
    assert_injected(result)


def test_pod_with_existing_volumes_is_injected_without_duplicates(server: Server) -> None:
    pod = make_pod(
        volumes=[
            {"name": "data", "emptyDir": {}},
            {"name": "lxcfs-uptime", "hostPath": {"path": "/var/lib/lxcfs/proc/uptime"}},
        ],
        containers=[
            {
                "name": "a",
                "image": "busybox",
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data"},
                    {"name": "lxcfs-uptime", "mountPath": "/proc/uptime", "readOnly": True},
                ],
            }
        ],
    )
    result = mutate(server, pod)
    assert result is not None
    assert_injected(result)
    assert result["spec"]["volumes"][:2] == pod["spec"]["volumes"]


def test_mount_dir_flag_is_used(tmp_path: Path) -> None:
    with running_server(tmp_path, "--mount-dir", "/run/procfs-view") as own:
        result = mutate(own, make_pod())
    assert result is not None
    assert_injected(result, "/run/procfs-view")


def test_opted_out_pod_is_admitted_unchanged(server: Server) -> None:
    pod = make_pod()
    pod["metadata"]["annotations"] = {"procfs-view.io/inject": "false"}
    assert mutate(server, pod) is None


def test_already_injected_pod_is_admitted_unchanged(server: Server) -> None:
    once = mutate(server, make_pod())
    assert once is not None
    assert mutate(server, once) is None


def test_not_understood_pod_is_admitted_unchanged(server: Server) -> None:
    assert mutate(server, {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": 3}}) is None


@pytest.mark.parametrize("body", [b"{not json", b'{"kind": "AdmissionReview"}'])
def test_malformed_body_gets_400_and_allowed(server: Server, body: bytes) -> None:
    status, answer = server.post(body)
    assert status == 400
    assert answer["response"]["allowed"] is True
    assert server.process.poll() is None


def test_the_largest_pod_the_api_server_sends_is_injected_and_more_is_refused(
    server: Server,
) -> None:
    """The API server caps requests at 3 MiB; a body past MAX_BODY (4 MiB) gets 413 (the
    pod is then admitted as is: failurePolicy Ignore) instead of growing the server past
    its memory limit (8 MiB of JSON took it to 253 MiB)."""
    env = [{"name": f"E{index}", "value": "v"} for index in range(95_000)]
    pod = make_pod(containers=[{"name": "a", "image": "busybox", "env": env}])
    assert len(admission_review(pod)) > 3 * 1024 * 1024
    result = mutate(server, pod)
    assert result is not None
    assert_injected(result)
    # Past the cap, or under it but made of small objects (4 MiB of them took the server
    # to 139 MiB): refused before parsing.
    for body in (b" " * (MAX_BODY + 1), admission_review([{}] * (MAX_BODY // 5))):
        connection = server.connection()
        try:
            connection.request("POST", "/mutate", body)
            response = connection.getresponse()
            assert (response.status, response.read()) == (413, b"request body too large\n")
        finally:
            connection.close()
    assert server.process.poll() is None


def test_health_and_unknown_paths(server: Server) -> None:
    connection = server.connection()
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"ok\n")
        connection.request("GET", "/mutate")
        response = connection.getresponse()
        response.read()
        assert response.status == 405
        connection.request("POST", "/elsewhere", b"{}")
        response = connection.getresponse()
        response.read()
        assert response.status == 404
    finally:
        connection.close()


def test_plain_http_is_refused(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as plain:
        plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := plain.recv(4096):
                received += chunk
    assert not received.startswith(b"HTTP/")
    assert server.process.poll() is None


def test_an_untrusted_certificate_is_what_clients_see_with_another_ca(server: Server) -> None:
    connection = server.connection(trustme.CA())
    with pytest.raises(ssl.SSLCertVerificationError):
        connection.request("GET", "/healthz")
    connection.close()


def test_replaced_certificate_files_are_served_without_restart(tmp_path: Path) -> None:
    with running_server(tmp_path) as own:
        old = own.connection()
        old.request("GET", "/healthz")
        assert old.getresponse().read() == b"ok\n"
        renewed = trustme.CA()
        write_pair(renewed, tmp_path)
        fresh = own.connection(renewed)
        fresh.request("GET", "/healthz")
        assert fresh.getresponse().read() == b"ok\n"
        # The connection made before the renewal keeps working.
        old.request("GET", "/healthz")
        assert old.getresponse().read() == b"ok\n"
        for connection in (old, fresh):
            connection.close()
        assert "reloaded the TLS certificate" in own.log()


def test_missing_tls_files_exit_1(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "procfs_view",
            "webhook",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            str(tmp_path / "none.crt"),
            "--tls-key",
            str(tmp_path / "none.key"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 1
    assert "TLS" in result.stderr


def test_tls_is_required_on_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "procfs_view", "webhook", "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 2
    assert "--tls-cert" in result.stderr
