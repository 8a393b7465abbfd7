"""The Kubernetes manifests: a grace period longer than jobkit's, probes that read the
worker's heartbeat with timings that agree with jobkit's heartbeat settings, and migrations
as a Job."""

from __future__ import annotations

from deployfiles import (
    DEFAULTS,
    GRACE_MARGIN,
    kubernetes,
    kubernetes_environment,
    kubernetes_worker,
    option,
    shutdown_timeout,
)


def test_the_deployment_gives_workers_longer_than_their_grace_period_to_stop():
    manifests = kubernetes()
    assert set(manifests) == {"Job", "Deployment"}
    deployment = manifests["Deployment"]
    assert deployment["apiVersion"] == "apps/v1"
    template = deployment["spec"]["template"]
    assert (
        deployment["spec"]["selector"]["matchLabels"].items()
        <= template["metadata"]["labels"].items()
    )
    container = kubernetes_worker()
    assert container["command"][:2] == ["jobkit", "worker"]
    grace = shutdown_timeout(container["command"], kubernetes_environment(container))
    termination = template["spec"]["terminationGracePeriodSeconds"]
    assert termination > DEFAULTS.shutdown_timeout
    assert termination >= grace + GRACE_MARGIN


def test_the_liveness_probe_reads_the_heartbeat_within_jobkits_timings():
    container = kubernetes_worker()
    liveness = container["livenessProbe"]
    command = liveness["exec"]["command"]
    assert command[:3] == ["jobkit", "workers", "--check"]
    max_age = float(option(command, "--max-age") or DEFAULTS.heartbeat_timeout)
    # Fresh means a few beats, and less than the timeout after which peers rescue its jobs.
    assert 2 * DEFAULTS.heartbeat_interval <= max_age < DEFAULTS.heartbeat_timeout
    assert liveness["periodSeconds"] >= DEFAULTS.heartbeat_interval / 2
    assert liveness["failureThreshold"] >= 2  # one slow answer restarts nothing
    startup = container["startupProbe"]
    assert startup["exec"]["command"][:3] == ["jobkit", "workers", "--check"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


def test_migrations_run_as_a_job_with_the_workers_database():
    job = kubernetes()["Job"]
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["jobkit", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    [database] = [item for item in container["env"] if item["name"] == "JOBKIT_DATABASE_URL"]
    [worker_database] = [
        item for item in kubernetes_worker()["env"] if item["name"] == "JOBKIT_DATABASE_URL"
    ]
    assert database == worker_database
