"""Scale-down decisions: which backends to drain, and when replicas may drop."""
import pytest

from dataclay_operator.api import ANNOTATION_APPLIED_REPLICAS
from dataclay_operator.scaling import (DRAIN_RETRY_MAX, Bypass, LifecyclePlan, ScalePlan, applied_replicas,
                                       backends_to_remove, current_replicas, detect_bypass, drain_retry_delay,
                                       plan_lifecycle, plan_scale, replicas_after_drain)


def test_create_uses_the_desired_replicas():
    assert plan_scale("dc", 3, None) == ScalePlan(replicas=3, target=3)


@pytest.mark.parametrize("desired, current", [(3, 3), (5, 3), (2, 1)])
def test_scale_up_or_steady_needs_no_drain(desired, current):
    plan = plan_scale("dc", desired, current)
    assert plan == ScalePlan(replicas=desired, target=desired) and not plan.scale_down


def test_scale_down_drains_the_highest_ordinals_and_keeps_replicas_until_done():
    plan = plan_scale("dc", 2, 5)
    assert plan.scale_down
    assert plan.drain == ("dc-backend-2", "dc-backend-3", "dc-backend-4")
    assert plan.replicas == 5  # written now: nothing is removed before the drain succeeds
    assert plan.target == 2


def test_backends_to_remove():
    assert backends_to_remove("x", 3, 2) == ("x-backend-2",)
    assert backends_to_remove("x", 3, 3) == ()


@pytest.mark.parametrize("drained_from, desired_now, expected", [
    (2, 2, 2),     # spec unchanged: lower to the target
    (2, 4, 4),     # scaled back up while draining: safe, nothing un-drained goes away
    (2, 1, None),  # asked for fewer meanwhile: backend 1 is not drained yet
])
def test_replicas_after_drain_rereads_the_spec(drained_from, desired_now, expected):
    assert replicas_after_drain(drained_from, desired_now) == expected


def test_drain_retry_backs_off_and_caps():
    delays = [drain_retry_delay(n) for n in range(1, 10)]
    assert delays[0] == 10 and delays[1] == 20 and delays == sorted(delays)
    assert max(delays) == DRAIN_RETRY_MAX


def test_marks_follow_the_spec_and_drained_backends_whose_pod_is_gone_are_retired():
    registered = {"dc-backend-0": False, "dc-backend-1": True, "dc-backend-2": True, "dc-backend-3": True,
                  "dc-backend-4": False}
    pods = {"dc-backend-0", "dc-backend-1", "dc-backend-2"}
    plan = plan_lifecycle("dc", 2, registered, pods)
    # backend-1 is wanted (a drain cancelled or interrupted left it marked): lifted; backend-2 is
    # drained but its pod still runs: left alone; backend-3 is drained and gone: retired;
    # backend-4 is gone but was never drained (removed behind the operator's back): not retired
    assert plan == LifecyclePlan(lift=("dc-backend-1",), deregister=("dc-backend-3",))
    assert plan_lifecycle("dc", 5, registered, pods) == LifecyclePlan(
        lift=("dc-backend-1", "dc-backend-2", "dc-backend-3"), deregister=())
    assert plan_lifecycle("dc", 2, {}, pods) == LifecyclePlan()


def sts(live: int, applied: int | str | None) -> dict:
    annotations = {} if applied is None else {ANNOTATION_APPLIED_REPLICAS: str(applied)}
    return {"metadata": {"name": "dc-backend", "annotations": annotations}, "spec": {"replicas": live}}


@pytest.mark.parametrize("live, applied, expected", [
    (3, 3, None),       # as the operator left it
    (4, 3, None),       # raised by someone: the operator drains the extra (empty) backends and lowers it
    (3, None, None),    # made by an operator before the annotation: nothing to compare with
    (1, "x", None),     # an annotation that is not a count is ignored
    (1, 3, Bypass(applied=3, live=1, removed=("dc-backend-1", "dc-backend-2"))),
])
def test_replicas_below_what_the_operator_applied_are_a_bypass(live, applied, expected):
    assert detect_bypass("dc", sts(live, applied)) == expected


def test_no_statefulset_is_no_bypass():
    assert detect_bypass("dc", None) is None and current_replicas(None) is None and applied_replicas(None) is None


@pytest.mark.parametrize("live, applied, current", [(3, 3, 3), (1, 3, 3), (4, 3, 4), (2, None, 2)])
def test_a_plan_starts_from_what_the_operator_applied_when_replicas_were_lowered_behind_its_back(
        live, applied, current):
    assert current_replicas(sts(live, applied)) == current


def test_backends_removed_behind_the_operators_back_come_back_and_are_drained_before_they_go():
    """Spec 2, applied 3, someone set 1: restore 3 and drain dc-backend-2, never accept 1 or 2 as is."""
    plan = plan_scale("dc", 2, current_replicas(sts(1, 3)))
    assert plan == ScalePlan(replicas=3, target=2, drain=("dc-backend-2",))
    assert plan_scale("dc", 3, current_replicas(sts(1, 3))) == ScalePlan(replicas=3, target=3)
