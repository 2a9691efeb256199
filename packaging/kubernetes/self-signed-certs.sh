#!/usr/bin/env bash
# The webhook without cert-manager: makes a private CA and a serving certificate for
# procfs-view-webhook.procfs-view.svc with openssl, and applies webhook.yaml without its
# cert-manager objects, plus the TLS Secret, with the CA as the webhooks' caBundle.
#   packaging/kubernetes/self-signed-certs.sh            apply with kubectl
#   packaging/kubernetes/self-signed-certs.sh --print    print the manifest instead
# Run it again to rotate (the server reloads the Secret's files when they change).
# Needs openssl (and kubectl unless --print); the namespace comes from daemonset.yaml.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
namespace=procfs-view
service=procfs-view-webhook
secret=procfs-view-webhook-tls
days=${DAYS:-825}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=procfs-view-webhook-ca" \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
cat >"$work/ext.cnf" <<EXT
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:$service.$namespace.svc, DNS:$service.$namespace.svc.cluster.local
EXT
openssl req -newkey rsa:2048 -nodes -subj "/CN=$service.$namespace.svc" \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
  -CAcreateserial -days "$days" -extfile "$work/ext.cnf" -out "$work/tls.crt" 2>/dev/null

b64() { base64 -w0 <"$1"; }
manifest() {
  cat <<SECRET
apiVersion: v1
kind: Secret
metadata:
  name: $secret
  namespace: $namespace
type: kubernetes.io/tls
data:
  tls.crt: $(b64 "$work/tls.crt")
  tls.key: $(b64 "$work/tls.key")
  ca.crt: $(b64 "$work/ca.crt")
SECRET
  # webhook.yaml minus the cert-manager documents, each webhook's clientConfig given
  # the CA (documents are separated by lines of exactly "---").
  awk -v ca="$(b64 "$work/ca.crt")" '
    function flush() { if (doc != "" && doc !~ /\napiVersion: cert-manager\.io\//) printf "---%s\n", doc; doc = "" }
    /^---$/ { flush(); next }
    { doc = doc "\n" $0; if ($0 == "    clientConfig:") doc = doc "\n      caBundle: " ca }
    END { flush() }
  ' "$here/webhook.yaml"
}

if [ "${1:-}" = "--print" ]; then
  manifest
else
  manifest | kubectl apply -f -
fi
