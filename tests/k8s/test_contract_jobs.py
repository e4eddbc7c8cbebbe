"""S36: the Job controller on the runtime under test. Catalogue: ``docs/CONTRACT.md``."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from k8s_suite import jobs, podstate
from k8s_suite.manifests import sh


def test_s36_job_controller(kube):
    ok_line = f"job-ok-{kube.token}"
    names = {
        "ok": jobs.create(kube, jobs.manifest(kube, "ok", sh(f"echo {ok_line}"))),
        "fail": jobs.create(kube, jobs.manifest(kube, "fail", sh("exit 3"))),
        # retries allowed, but the policy fails the Job on exit code 3 at once: exactly one pod
        "policy": jobs.create(kube, jobs.manifest(kube, "policy", sh("exit 3"), backoff_limit=6, pod_failure_policy={
            "rules": [{"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [3]}}]})),
    }
    with ThreadPoolExecutor(len(names)) as pool:
        done = dict(zip(names, pool.map(lambda w: jobs.wait_finished(kube, names[w], max_pods=1), names)))

    job = done["ok"]
    assert jobs.condition(job, "Complete") and (job.get("status") or {}).get("succeeded") == 1, (
        f"a Job whose pod exits 0 must complete with succeeded=1: {jobs.describe(job)}")
    pods = jobs.pods(kube, names["ok"])
    assert len(pods) == 1 and kube.log_lines(pods[0]["metadata"]["name"]) == [ok_line], (
        f"the completed Job's one pod must have logged [{ok_line!r}]: "
        + "; ".join(podstate.describe(p) for p in pods))

    for what, reason in (("fail", "BackoffLimitExceeded"), ("policy", "PodFailurePolicy")):
        job = done[what]
        failed = jobs.condition(job, "Failed")
        pods = jobs.pods(kube, names[what])
        codes = [(podstate.terminated(p) or {}).get("exitCode") for p in pods]
        assert failed and failed.get("reason") == reason, (
            f"Job {what}: expected condition Failed with reason {reason}: {jobs.describe(job)}; pods' exit codes {codes}")
        assert codes == [3], f"Job {what}: expected one pod that exited 3, got exit codes {codes}: " + "; ".join(
            podstate.describe(p) for p in pods)
