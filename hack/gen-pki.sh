#!/usr/bin/env bash
# Writes a throw-away PKI for the local control plane into DIR: a CA, the apiserver's serving
# certificate (also for 10.88.0.1, where the real node's pods reach it), an admin client certificate (system:masters), a serving certificate for webhooks on
# 127.0.0.1, the service-account signing key pair, and an admin kubeconfig.
# Usage: hack/gen-pki.sh DIR [APISERVER_PORT]
set -euo pipefail
dir=${1:?usage: gen-pki.sh DIR [APISERVER_PORT]}
port=${2:-6443}
mkdir -p "$dir"
cd "$dir"
days=3650

openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days "$days" \
  -subj "/CN=jobtrace-local-ca" -sha256 2>/dev/null

issue() { # issue NAME SUBJECT EXTENSIONS
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  printf '%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -sha256 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

issue apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,IP:10.88.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
# system:masters bypasses RBAC, and the apiserver trusts its incoming traceparent.
issue admin "/O=system:masters/CN=jobtrace-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
issue webhook "/CN=jobtrace-webhook.local" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"

openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null

b64() { base64 -w0 <"$1"; }
cat >admin.kubeconfig <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: jobtrace-local
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(b64 ca.crt)
users:
- name: admin
  user:
    client-certificate-data: $(b64 admin.crt)
    client-key-data: $(b64 admin.key)
contexts:
- name: jobtrace-local
  context: {cluster: jobtrace-local, user: admin}
current-context: jobtrace-local
KUBECONFIG
chmod 600 ./*.key admin.kubeconfig
