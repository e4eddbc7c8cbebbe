"""The local cluster's PKI: who each certificate names, and that openssl really produces them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ci.cluster import pki


def by_name(node="vm", ip="192.0.2.2"):
    return {s.name: s for s in pki.cert_specs(node, ip)}


def test_apiserver_serving_names():
    s = by_name()["apiserver"]
    assert s.server and not s.client
    for dns in ("kubernetes", "kubernetes.default.svc", "localhost"):
        assert dns in s.dns
    assert s.ips == ("127.0.0.1", "10.0.0.1", "192.0.2.2")


def test_client_identities_and_groups():
    specs = by_name("vm", "192.0.2.2")
    assert (specs["admin"].orgs, specs["admin"].client) == (("system:masters",), True)
    assert specs["kubelet"].cn == "system:node:vm" and specs["kubelet"].orgs == ("system:nodes",)
    assert specs["kube-controller-manager"].cn == "system:kube-controller-manager"
    assert specs["kube-scheduler"].cn == "system:kube-scheduler"
    # logs/exec: the apiserver's client cert towards kubelets must pass kubelet webhook authz
    assert specs["apiserver-kubelet-client"].orgs == ("system:masters",)
    assert specs["kubelet-serving"].server and "192.0.2.2" in specs["kubelet-serving"].ips


def test_loopback_node_ip_is_not_duplicated():
    s = by_name("vm", "127.0.0.1")["apiserver"]
    assert s.ips == ("127.0.0.1", "10.0.0.1")


def test_subject_and_extensions_render():
    s = pki.CertSpec("x", "system:node:n", ("system:nodes",), server=True, client=True, dns=("n",), ips=("1.2.3.4",))
    assert s.subject() == "/O=system:nodes/CN=system:node:n"
    ext = s.extensions()
    assert "extendedKeyUsage = serverAuth,clientAuth" in ext
    assert "subjectAltName = DNS:n,IP:1.2.3.4" in ext
    assert "CA:FALSE" in ext


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_ensure_creates_verifiable_certs_and_reuses_them(tmp_path: Path):
    d = tmp_path / "pki"
    made = pki.ensure(d, "vm", "192.0.2.2", tmp_path / "pki.log")
    for s in made.specs:
        r = subprocess.run(["openssl", "verify", "-CAfile", str(made.ca_crt), str(made.crt(s.name))], capture_output=True, text=True)
        assert r.returncode == 0, (s.name, r.stdout, r.stderr)
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(made.crt("apiserver"))], capture_output=True, text=True).stdout
    assert "IP Address:10.0.0.1" in text and "DNS:kubernetes.default.svc" in text
    subj = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in", str(made.crt("kubelet"))], capture_output=True, text=True).stdout
    assert "system:nodes" in subj and "system:node:vm" in subj
    before = made.ca_crt.read_bytes()
    pki.ensure(d, "vm", "192.0.2.2", tmp_path / "pki.log")
    assert made.ca_crt.read_bytes() == before, "unchanged specs must reuse the CA"
    pki.ensure(d, "vm", "192.0.2.3", tmp_path / "pki.log")
    assert made.ca_crt.read_bytes() != before, "a new node IP must re-issue the PKI"


def test_kubeconfig_points_at_files(tmp_path: Path):
    import json

    kc = json.loads(pki.kubeconfig("https://127.0.0.1:6443", tmp_path / "ca.crt", tmp_path / "a.crt", tmp_path / "a.key", "admin"))
    assert kc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert kc["users"][0]["user"]["client-key"] == str(tmp_path / "a.key")
    assert kc["current-context"] == kc["contexts"][0]["name"]
