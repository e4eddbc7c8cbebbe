"""The local cluster's PKI, made with the ``openssl`` command line (no Python crypto dependency).

One CA signs every certificate. :func:`cert_specs` is the pure description (who, which
groups, which names) and is what the unit tests check; :func:`ensure` turns it into files,
reusing what is already there when it still matches (same CA, same names).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from ci.errors import SetupError
from ci.tools import ShRunner

SERVICE_IP = "10.0.0.1"  # first address of --service-cluster-ip-range 10.0.0.0/24
CERT_DAYS = 3650


@dataclass(frozen=True)
class CertSpec:
    name: str  # file stem: <name>.crt / <name>.key
    cn: str
    orgs: tuple[str, ...] = ()
    server: bool = False
    client: bool = False
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()

    def subject(self) -> str:
        return "".join(f"/O={o}" for o in self.orgs) + f"/CN={self.cn}"

    def extensions(self) -> str:
        """The ``openssl x509 -extfile`` section for this certificate."""
        usages = [u for u, on in (("serverAuth", self.server), ("clientAuth", self.client)) if on]
        lines = [
            "[v3]",
            "basicConstraints = critical,CA:FALSE",
            "keyUsage = critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage = {','.join(usages)}",
        ]
        sans = [f"DNS:{d}" for d in self.dns] + [f"IP:{i}" for i in self.ips]
        if sans:
            lines.append(f"subjectAltName = {','.join(sans)}")
        return "\n".join(lines) + "\n"


def cert_specs(node_name: str, node_ip: str) -> tuple[CertSpec, ...]:
    """Every certificate of a single-node cluster whose node is ``node_name`` at ``node_ip``."""
    node_ips = tuple(dict.fromkeys(["127.0.0.1", node_ip]))
    return (
        CertSpec(
            "apiserver",
            "kube-apiserver",
            server=True,
            dns=("kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", node_name),
            ips=tuple(dict.fromkeys(["127.0.0.1", SERVICE_IP, node_ip])),
        ),
        # The apiserver's client identity towards kubelets (logs, exec): system:masters
        # passes the kubelet's webhook authorization without an extra RBAC binding.
        CertSpec("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",), client=True),
        CertSpec("admin", "reaper-ci-admin", ("system:masters",), client=True),
        CertSpec("kubelet", f"system:node:{node_name}", ("system:nodes",), client=True),
        CertSpec("kubelet-serving", f"system:node:{node_name}", ("system:nodes",), server=True, dns=(node_name, "localhost"), ips=node_ips),
        CertSpec("kube-controller-manager", "system:kube-controller-manager", client=True),
        CertSpec("kube-scheduler", "system:kube-scheduler", client=True),
    )


@dataclass
class Pki:
    dir: Path
    specs: tuple[CertSpec, ...] = field(default_factory=tuple)

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def crt(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"


def _openssl(args: Sequence[str], log: Path) -> None:
    r = ShRunner(log)(["openssl", *args], check=False)
    if r.returncode != 0:
        tail = " | ".join(r.out.strip().splitlines()[-2:])
        raise SetupError(f"openssl {args[0]} failed (exit {r.returncode}): {tail} (log: {log})")


def ensure(pki_dir: Path, node_name: str, node_ip: str, log: Path) -> Pki:
    """Create (or reuse, when the recorded specs are unchanged) the CA, certificates and SA keys."""
    specs = cert_specs(node_name, node_ip)
    pki = Pki(pki_dir, specs)
    stamp = pki_dir / "specs.json"
    wanted = json.dumps([asdict(s) for s in specs], sort_keys=True)
    files = [pki.ca_crt, pki.ca_key, pki.sa_key, pki.sa_pub] + [p for s in specs for p in (pki.crt(s.name), pki.key(s.name))]
    if stamp.is_file() and stamp.read_text() == wanted and all(f.is_file() for f in files):
        return pki
    pki_dir.mkdir(parents=True, exist_ok=True)
    pki_dir.chmod(0o700)
    for old in pki_dir.iterdir():
        old.unlink()
    _openssl(["req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-sha256", "-days", str(CERT_DAYS),
              "-keyout", str(pki.ca_key), "-out", str(pki.ca_crt), "-subj", "/CN=reaper-ci-ca",
              "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"], log)
    for s in specs:
        csr = pki_dir / f"{s.name}.csr"
        ext = pki_dir / f"{s.name}.ext"
        ext.write_text(s.extensions())
        _openssl(["req", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", str(pki.key(s.name)), "-out", str(csr), "-subj", s.subject()], log)
        _openssl(["x509", "-req", "-sha256", "-in", str(csr), "-CA", str(pki.ca_crt), "-CAkey", str(pki.ca_key),
                  "-set_serial", str(0x1000 + specs.index(s)), "-days", str(CERT_DAYS), "-out", str(pki.crt(s.name)),
                  "-extfile", str(ext), "-extensions", "v3"], log)
        csr.unlink()
        ext.unlink()
    _openssl(["genrsa", "-out", str(pki.sa_key), "2048"], log)
    _openssl(["rsa", "-in", str(pki.sa_key), "-pubout", "-out", str(pki.sa_pub)], log)
    for f in pki_dir.glob("*.key"):
        f.chmod(0o600)
    stamp.write_text(wanted)
    return pki


def kubeconfig(server: str, ca: Path, crt: Path, key: Path, user: str, cluster: str = "reaper-ci") -> str:
    """A kubeconfig (JSON is valid YAML) pointing at ``server`` with a client certificate."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority": str(ca)}}],
            "users": [{"name": user, "user": {"client-certificate": str(crt), "client-key": str(key)}}],
            "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
            "current-context": cluster,
        },
        indent=2,
    ) + "\n"
