"""The failure modes this project exists to prevent, not covered elsewhere: a status write that
re-triggers reconciles, watching what the controller does not own, and leaks under churn.
(Fights: test_dryrun_and_fights.py; backoff and rate limits: test_controller.py; leader
election: test_deploy.py.)"""

from __future__ import annotations

from pathlib import Path

from helpers import CONTROLLER, apptask, get_deployment, put_apptask, scoped, status_of

from ssa_controller.envtest import poll_until
from ssa_controller.kube import APPTASKS, DEPLOYMENTS


def test_status_writes_do_not_retrigger_reconciles(admin, controller, namespace, cluster):
    controller(scoped(namespace))
    put_apptask(admin, apptask("steady", namespace, replicas=1))
    poll_until(lambda: status_of(admin, namespace, "steady").get("phase") == "Ready", timeout=60)
    mark = cluster.audit.mark()
    # Keep the controller demonstrably busy with another object meanwhile.
    put_apptask(admin, apptask("probe", namespace, replicas=1))
    poll_until(lambda: status_of(admin, namespace, "probe").get("phase") == "Ready", timeout=60)
    assert cluster.audit.count(mark, user=CONTROLLER, name="probe", writes=True) >= 2
    assert cluster.audit.count(mark, user=CONTROLLER, name="steady") == 0


def unrelated_deployment(namespace: str, name: str) -> dict[str, object]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def test_only_owned_deployments_are_watched(admin, controller, namespace, cluster):
    mark = cluster.audit.mark()
    process = controller(scoped(namespace))
    for i in range(30):
        admin.create(DEPLOYMENTS.path(namespace), unrelated_deployment(namespace, f"other-{i}"))
    put_apptask(admin, apptask("mine", namespace, replicas=0))
    poll_until(lambda: status_of(admin, namespace, "mine").get("phase") == "Ready", timeout=60)
    assert process.metric('ssa_controller_cached_objects{resource="deployments"}') == 1
    assert process.metric('ssa_controller_cached_objects{resource="apptasks"}') == 1
    reads = cluster.audit.select(mark, user=CONTROLLER, resource="deployments", verbs=("list", "watch"))
    assert reads and all("labelSelector=app.kubernetes.io%2Fmanaged-by" in e.request_uri
                         for e in reads)
    assert cluster.audit.count(mark, user=CONTROLLER, name="other-0") == 0


def process_usage(pid: int) -> tuple[int, int, int]:
    """(RSS in KiB, threads, open file descriptors) of a process, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return (int(fields["VmRSS"].split()[0]), int(fields["Threads"]),
            len(list(Path(f"/proc/{pid}/fd").iterdir())))


def test_churn_leaks_nothing(admin, controller, namespace):
    process = controller(scoped(namespace, workers=4))
    batch = 60

    def churn(round_: int) -> None:
        for i in range(batch):
            put_apptask(admin, apptask(f"churn-{i}", namespace, replicas=0,
                                       env=[{"name": "ROUND", "value": str(round_)}]))
        poll_until(lambda: process.metric('ssa_controller_cached_objects{resource="deployments"}')
                   == batch, timeout=120, message=f"round {round_}: all Deployments cached")
        for i in range(batch):
            admin.delete(APPTASKS.path(namespace, f"churn-{i}"))
        poll_until(lambda: process.metric('ssa_controller_cached_objects{resource="apptasks"}') == 0
                   and process.metric('ssa_controller_cached_objects{resource="deployments"}') == 0,
                   timeout=120, message=f"round {round_}: caches empty after deletion")

    churn(0)
    rss0, threads0, fds0 = process_usage(process.proc.pid)
    for round_ in range(1, 4):
        churn(round_)
    rss, threads, fds = process_usage(process.proc.pid)
    assert threads == threads0
    assert fds <= fds0 + 2
    assert rss - rss0 < 8 * 1024, f"RSS grew by {rss - rss0} KiB over three churn rounds"
    assert get_deployment(admin, namespace, "churn-0") is None
