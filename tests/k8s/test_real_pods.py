"""S44-S48, S59: Kubernetes' default pod on the runtime: its token, two pods at one path, its
environment, its name and hosts files, processes that leave the process group, a prompt delete
(docs/CONTRACT.md)."""

from __future__ import annotations

import json
import time

from k8s_suite import edges, naming, podstate
from k8s_suite import manifests as m
from k8s_suite import timeouts as T
from k8s_suite.manifests import sh

SA = edges.SA_DIR
GONE_PROMPTLY = 8  # seconds from the delete to the pod gone when its workload ends on SIGTERM (runc: 2-4 s here)


def _token_owner(kube, name: str, text: str, path: str) -> str | None:
    """A problem with a token read from ``name``'s ``path``, or None when it is this pod's."""
    try:
        got = edges.token_pod(text)
    except ValueError as e:
        return f"{path} in {name}: {e}"
    return None if got == (kube.ns, name) else f"{path} in {name} was issued for pod {got[0]}/{got[1]}, not {kube.ns}/{name}"


def test_s44_service_account_token(kube):
    """The default pod's token, namespace and CA, read by the main process and by an exec."""
    name = kube.name("sa")
    seconds = naming.sleep_seconds(kube.token, "s44")
    kube.marker(["sleep", str(seconds)])
    kube.create(kube.pod("sa", sh(f"cat {SA}/namespace; echo; cat {SA}/token; echo; echo printed; exec sleep {seconds}"),
                         grace=2))
    kube.wait_running(name)
    kube.follow_logs(name, timeout=T.POD_START).wait_for_line("printed", T.POD_START)
    log = kube.log_lines(name)
    assert len(log) >= 2 and log[0] == kube.ns, f"main process: {SA}/namespace must be {kube.ns!r}; log {log[:2]!r}"
    problem = _token_owner(kube, name, log[1], f"{SA}/token (main process)")
    assert problem is None, problem
    res = kube.exec(name, ["cat", f"{SA}/token"])
    assert res.exit_code == 0, f"exec cat {SA}/token: {res.describe()}"
    problem = _token_owner(kube, name, res.stdout, f"{SA}/token (exec)")
    assert problem is None, problem
    ca = kube.exec(name, ["cat", f"{SA}/ca.crt"])
    want = json.loads(kube.ctx.core.read_namespaced_config_map("kube-root-ca.crt", kube.ns).data)["data"]["ca.crt"]
    assert ca.exit_code == 0 and ca.stdout == want, (
        f"{SA}/ca.crt must be the cluster's CA (ConfigMap kube-root-ca.crt): {ca.describe()}")


def test_s45_two_pods_one_mount_path(kube):
    """Two pods on one node mount their own token and their own ConfigMap at the same paths, and
    both run at once: each must read its own (a runtime whose pods share one mount namespace lets
    the later mount replace the earlier one: pod A then reads pod B's token)."""
    node = kube.info.nodes[0]
    names = {}
    for who in ("a", "b"):
        cm = kube.name(f"cfg-{who}")
        kube.create_configmap(m.configmap(cm, {"who": f"{who}-{kube.token}"}, token=kube.token, sid=kube.sid))
        names[who], _, _ = kube.sleeping_pod(who, node_name=node, volumes=[m.configmap_volume("cfg", cm)],
                                             mounts=[m.mount("cfg", "/etc/reaper-ci-config")])
    problems = []
    for who, name in names.items():  # both running now: the second mount has happened
        res = kube.exec(name, ["cat", "/etc/reaper-ci-config/who"])
        if res.exit_code != 0 or res.stdout != f"{who}-{kube.token}":
            problems.append(f"pod {who} reads /etc/reaper-ci-config/who = {res.stdout!r} (exit {res.exit_code}), "
                            f"its own ConfigMap holds {who}-{kube.token!s}")
        tok = kube.exec(name, ["cat", f"{SA}/token"])
        problem = _token_owner(kube, name, tok.stdout, f"{SA}/token") if tok.exit_code == 0 else tok.describe()
        if problem:
            problems.append(problem)
    assert not problems, "pods on one node see each other's volumes: " + "; ".join(problems)


def _environ_of(kube, name: str, *, tty: bool) -> dict[str, str]:
    # "; true": a shell runs its last command in its own place (exec), which would read od's environment
    res = kube.exec(name, ["/bin/sh", "-c", "od -An -tx1 -v /proc/$$/environ; true"], tty=tty)
    assert res.exit_code == 0, f"exec (tty={tty}) reading its own environment: {res.describe()}"
    return edges.environ(res.stdout)


def test_s46_environment_is_the_specs(kube):
    """The main process, an exec and an exec with a terminal each get exactly the spec's variables
    (byte for byte: empty, spaces, '=', newline, unicode) plus PATH/HOSTNAME/HOME, TERM with a
    terminal and the service links; nothing of the runtime's own environment."""
    spec = {f"EDGE_{i}": v for i, v in enumerate(edges.EDGE_VALUES)}
    seconds = naming.sleep_seconds(kube.token, "s46")
    name = kube.name("env")
    kube.marker(["sleep", str(seconds)])
    # the main process prints its own environment as the kernel holds it ("$$$$": the kubelet makes it "$$")
    kube.create(kube.pod("env", sh(f"od -An -tx1 -v /proc/$$$$/environ; echo printed; exec sleep {seconds}"),
                         env=spec, grace=2))
    kube.wait_running(name)
    kube.follow_logs(name, timeout=T.POD_START).wait_for_line("printed", T.POD_START)
    problems = []
    for what, tty in (("exec", False), ("exec with a terminal", True)):
        problems += [f"{what}: {p}" for p in edges.env_problems(_environ_of(kube, name, tty=tty), spec, tty=tty)]
    main = edges.environ("\n".join(l for l in kube.log_lines(name) if l != "printed"))
    assert main, f"the main process printed no environment: log {kube.logs(name)[:300]!r}"
    problems += [f"main process: {p}" for p in edges.env_problems(main, spec)]
    assert not problems, "; ".join(problems)


def test_s47_hostname_hosts_and_dns_config(kube):
    """The pod's hostname, /etc/hostname, /etc/hosts (its own entry and hostAliases) and the dnsConfig
    searches/options in /etc/resolv.conf: the kubelet's files, on the main and the exec path."""
    name = kube.name("hosts")
    alias, search = f"alias-{kube.token}.reaper-ci.test", f"rci-{kube.token}.example"
    script = ("hostname; cat /etc/hostname; grep -F '{alias}' /etc/hosts | tr -s ' \\t' ' '; "
              "grep -c -w -F '{name}' /etc/hosts; grep -F '{search}' /etc/resolv.conf >/dev/null && echo search-ok; "
              "grep -q 'ndots:3' /etc/resolv.conf && echo ndots-ok").format(alias=alias, name=name, search=search)
    seconds = naming.sleep_seconds(kube.token, "s47")
    kube.marker(["sleep", str(seconds)])
    kube.create(kube.pod("hosts", sh(f"{script}; echo printed; exec sleep {seconds}"), grace=2, spec_extra={
        # 192.0.2.0/24 is TEST-NET-1: an /etc/hosts line only, nothing is sent there
        "hostAliases": [{"ip": "192.0.2.10", "hostnames": [alias]}],
        "dnsConfig": {"searches": [search], "options": [{"name": "ndots", "value": "3"}]}}))
    kube.wait_running(name)
    want = [name, name, f"192.0.2.10 {alias}", "1", "search-ok", "ndots-ok"]
    kube.follow_logs(name, timeout=T.POD_START).wait_for_line("printed", T.POD_START)
    main = [l for l in kube.log_lines(name) if l != "printed"]
    res = kube.exec(name, ["/bin/sh", "-c", script])
    assert main == want and res.stdout.splitlines() == want, (
        f"hostname, /etc/hostname, the hostAliases line, the pod's own /etc/hosts entry, dnsConfig: expected {want}; "
        f"main process {main}, exec {res.stdout.splitlines()}")


def test_s48_processes_that_leave_the_process_group(kube):
    """A pod whose shell starts a child in a session of its own (setsid) and a double-forked daemon:
    deleting the pod ends all of them (runc kills every process of the container's cgroup)."""
    own = naming.sleep_seconds(kube.token, "s48-setsid")
    daemon = naming.sleep_seconds(kube.token, "s48-daemon")
    main = naming.sleep_seconds(kube.token, "s48-main")
    markers = [kube.marker(["sleep", str(s)]) for s in (own, daemon, main)]
    name = kube.name("escape")
    kube.create(kube.pod("escape", sh(f"setsid sleep {own} & (sleep {daemon} &); echo started; exec sleep {main}"),
                         grace=2))
    pod = kube.wait_running(name)
    node = kube.node_of(pod)
    for marker in markers:
        kube.wait_processes(node, marker, f"{' '.join(marker)} running", lambda n: n == 1)
    kube.delete_pod(name)
    kube.wait_gone(name)
    left = []
    for marker in markers:
        try:
            kube.wait_processes(node, marker, f"{' '.join(marker)} gone after the pod", lambda n: n == 0,
                                timeout=T.NODE_PROCESS)
        except AssertionError as e:
            left.append(str(e).splitlines()[0])
    assert not left, "processes of a deleted pod live on: " + "; ".join(left)
    assert podstate.phase(kube.get(name)) is None


def test_s59_a_deleted_pod_goes_promptly(kube, evidence):
    """`kubectl delete pod`: a workload that ends on SIGTERM at once; the pod (container and sandbox
    stopped, object removed) is gone within GONE_PROMPTLY seconds, far inside its 30 s grace period."""
    name = kube.name("prompt")
    kube.create(kube.pod("prompt", sh("trap 'exit 0' TERM; echo ready; while :; do sleep 1; done"), grace=30))
    pod = kube.wait_running(name)
    kube.follow_logs(name, timeout=T.POD_START).wait_for_line("ready", T.POD_START)  # the trap is set
    began = time.monotonic()
    kube.delete_pod(name)  # records the pod's sandbox id first
    kube.wait_gone(name)
    took = time.monotonic() - began
    cause = ""
    path = kube.info.component_logs.get("containerd")
    if took >= GONE_PROMPTLY and path:
        for sid in sorted(kube.sandbox_ids):
            r = kube.ctx.node_sh(kube.node_of(pod), f"grep -F -e {sid} {path} | grep -F 'failed to stop sandbox' | tail -n 1",
                                 ok=None)
            if r.stdout.strip():
                evidence.append(r.stdout.strip())
                cause = f"; containerd: {r.stdout.strip()[-220:]}"
    assert took < GONE_PROMPTLY, (f"the pod was gone {took:.1f}s after its delete, though its workload ends at once on "
                                  f"SIGTERM: the runtime delays the stop of its container or sandbox{cause}")
    print(f"pod gone {took:.1f}s after its delete")
