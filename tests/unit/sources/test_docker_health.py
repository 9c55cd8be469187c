"""Whether a container's inspect holds the health check an event reports, on data as the engines
sent it: Podman 4.3.1 sends `health_status` before it saves the check (its inspect then still
says `starting`); Docker names the new status in the event, after saving it."""

from sidecar.sources.docker import health_is_current

# Captured from Podman 4.3.1's Docker-compatible API: the event of `podman healthcheck run`, and
# the container's State.Health read before and after Podman saved the check.
PODMAN_EVENT = {"status": "health_status", "Type": "container", "Action": "health_status",
                "time": 1796427230, "timeNano": 1796427230157344286, "HealthStatus": "starting"}
SAVED = {"State": {"Health": {"Status": "healthy", "FailingStreak": 0, "Log": [
    {"Start": "2026-12-04T23:33:50.106732784Z", "End": "2026-12-04T23:33:50.194450443Z", "ExitCode": 0}]}}}
NOT_YET = {"State": {"Health": {"Status": "starting", "FailingStreak": 0, "Log": []}}}
EARLIER_CHECK = {"State": {"Health": {"Status": "unhealthy", "FailingStreak": 1, "Log": [
    {"Start": "2026-12-04T23:33:40.106732784Z", "End": "2026-12-04T23:33:40.194450443Z", "ExitCode": 1}]}}}


def test_podman_inspect_is_current_only_once_it_holds_the_check_the_event_reports():
    assert health_is_current(SAVED, PODMAN_EVENT)
    assert not health_is_current(NOT_YET, PODMAN_EVENT)
    assert not health_is_current(EARLIER_CHECK, PODMAN_EVENT)


def test_a_check_end_in_another_zone_or_none_is_read_in_utc():
    one_hour_east = {"State": {"Health": {"Log": [{"End": "2026-12-05T00:33:50.2+01:00"}]}}}
    assert health_is_current(one_hour_east, PODMAN_EVENT)
    no_zone = {"State": {"Health": {"Log": [{"End": "2026-12-04T23:33:50.2"}]}}}  # read as UTC
    assert health_is_current(no_zone, PODMAN_EVENT)
    unreadable = {"State": {"Health": {"Log": [{"End": "soon"}]}}}
    assert not health_is_current(unreadable, PODMAN_EVENT)


def test_docker_names_the_status_in_the_event_after_saving_it():
    docker_event = {"Type": "container", "Action": "health_status: healthy", "timeNano": 1796427230157344286}
    assert health_is_current(NOT_YET, docker_event)
