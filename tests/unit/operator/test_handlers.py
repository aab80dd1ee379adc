"""Which watch events reach the work queue, and settings from the environment."""
import pytest

from dataclay_operator import api
from dataclay_operator.config import DEFAULT_IMAGE, load_config
from dataclay_operator.events import build_event
from dataclay_operator.handlers import needs_reconcile, owner_key


def body(generation: int, observed: int | None) -> dict:
    status = {} if observed is None else {"observedGeneration": observed}
    return {"metadata": {"generation": generation}, "status": status}


@pytest.mark.parametrize("event_type, generation, observed, expected", [
    (None, 1, 1, True),          # initial listing: resume after an operator restart
    ("ADDED", 1, None, True),
    ("MODIFIED", 2, 1, True),    # spec changed
    ("MODIFIED", 1, None, True), # never reconciled
    ("MODIFIED", 2, 2, False),   # our own status write
    ("DELETED", 2, 1, False),
])
def test_needs_reconcile(event_type, generation, observed, expected):
    assert needs_reconcile(event_type, body(generation, observed)) is expected


def test_owner_key_finds_the_controlling_dataclay():
    child = {"metadata": {"namespace": "ns", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "other", "controller": False},
        {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": "store", "controller": True}]}}
    assert owner_key(child) == ("ns", "store")
    assert owner_key({"metadata": {"namespace": "ns"}}) is None
    foreign = {"metadata": {"namespace": "ns", "ownerReferences": [
        {"apiVersion": "other.io/v1", "kind": api.KIND, "name": "x", "controller": True}]}}
    assert owner_key(foreign) is None


def test_config_defaults_are_clusterwide():
    config = load_config({})
    assert config.clusterwide and config.namespaces == ()
    assert config.default_image == DEFAULT_IMAGE
    assert config.dataplane_host is None and config.dataplane_port is None
    assert config.workers == 4 and config.resync_seconds == 60


def test_config_from_environment():
    config = load_config({"DC_OPERATOR_NAMESPACES": " a, b ,,", "DC_OPERATOR_IMAGE": "img:1",
                          "DC_OPERATOR_DATAPLANE_HOST": "127.0.0.1", "DC_OPERATOR_DATAPLANE_PORT": "17000",
                          "DC_OPERATOR_RESYNC_SECONDS": "2.5", "DC_OPERATOR_WORKERS": "2",
                          "DC_OPERATOR_LIVENESS": "http://0.0.0.0:8080/healthz"})
    assert config.namespaces == ("a", "b") and not config.clusterwide
    assert (config.dataplane_host, config.dataplane_port) == ("127.0.0.1", 17000)
    assert (config.resync_seconds, config.workers, config.default_image) == (2.5, 2, "img:1")
    assert config.liveness == "http://0.0.0.0:8080/healthz"


@pytest.mark.parametrize("env", [{"DC_OPERATOR_WORKERS": "0"}, {"DC_OPERATOR_DATAPLANE_PORT": "x"},
                                 {"DC_OPERATOR_RESYNC_SECONDS": "-1"}])
def test_bad_config_fails_at_startup(env):
    with pytest.raises(ValueError):
        load_config(env)


def test_event_shape():
    from datetime import datetime, timezone

    dc = {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": "s", "namespace": "n", "uid": "u"}}
    event = build_event(dc, "Warning", "DrainFailed", "x" * 5000, datetime(2024, 1, 1, tzinfo=timezone.utc), "op-0")
    assert event["involvedObject"] == {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": "s",
                                       "namespace": "n", "uid": "u"}
    assert event["metadata"] == {"generateName": "s.", "namespace": "n"}
    assert (event["type"], event["reason"], len(event["message"])) == ("Warning", "DrainFailed", 1024)
    assert event["firstTimestamp"] == "2024-01-01T00:00:00Z"


def test_the_package_never_shadows_the_stdlib_operator_module():
    import operator

    import dataclay_operator

    assert hasattr(operator, "itemgetter") and "dataclay" not in (operator.__file__ or "")
    assert dataclay_operator.__name__ == "dataclay_operator"


def test_a_stopping_leader_keeps_its_lease_until_its_passes_in_flight_have_ended():
    """On SIGTERM (a rolling update) the leader waits for the passes in flight (up to 30 s); while
    it does, it must keep renewing its Lease, or a standby takes over (15 s) and both reconcile."""
    import threading
    import time
    from types import SimpleNamespace

    from dataclay_operator.config import OperatorConfig
    from dataclay_operator.controller import Controller
    from dataclay_operator.events import EventRecorder
    from dataclay_operator.handlers import stop
    from dataclay_operator.leader import LeaderElector
    from dataclay_operator.reconcile import Outcome, Reconciler
    from fake_kube import FakeKube

    kube = FakeKube()
    in_pass, release = threading.Event(), threading.Event()

    def a_long_pass(namespace: str, name: str) -> Outcome:
        in_pass.set()
        release.wait(30)
        return Outcome(None)

    memo = SimpleNamespace(controller=Controller(a_long_pass, workers=1), stop_campaign=threading.Event(),
                           reconciler=Reconciler(kube=kube, config=OperatorConfig(), events=EventRecorder(kube)))
    elector = LeaderElector(kube, "ops", "dataclay-operator", "leader", retry_period=0.02)
    campaign = threading.Thread(target=elector.run, daemon=True,
                                args=(memo.controller.start, lambda: None, memo.stop_campaign))
    campaign.start()
    memo.controller.enqueue(("ns", "store"))
    assert in_pass.wait(10), "the leader's worker takes the pass"

    def renew_time() -> str:
        return kube.get(elector.path)["spec"]["renewTime"]

    stopping = threading.Thread(target=stop, kwargs={"memo": memo}, daemon=True)
    stopping.start()
    try:
        assert memo.reconciler.stopping.wait(10)
        seen, deadline = renew_time(), time.monotonic() + 5
        while renew_time() == seen and time.monotonic() < deadline:
            threading.Event().wait(0.02)  # polled with a deadline: the campaign renews every retry period
        assert renew_time() != seen, "the stopping leader stopped renewing while its pass was still running"
    finally:
        release.set()
        stopping.join(30)
        campaign.join(30)
    assert not stopping.is_alive() and not campaign.is_alive()
