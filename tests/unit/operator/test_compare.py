"""Patch-if-different: compare only the fields we own."""
from dataclay_operator import children
from dataclay_operator.compare import differing_paths, is_subset, keep_immutable


def test_server_defaults_are_not_differences():
    desired = {"spec": {"ports": [{"port": 1, "name": "grpc"}], "type": "ClusterIP"}}
    live = {"spec": {"ports": [{"port": 1, "name": "grpc", "protocol": "TCP"}], "type": "ClusterIP",
                     "clusterIP": "10.0.0.7"}, "status": {}}
    assert is_subset(desired, live)
    assert differing_paths(desired, live) == []


def test_changed_and_removed_items_are_differences():
    live = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    assert not is_subset({"env": [{"name": "A", "value": "1"}]}, live)  # B removed
    assert not is_subset({"env": [{"name": "A", "value": "9"}, {"name": "B", "value": "2"}]}, live)
    assert differing_paths({"spec": {"replicas": 3, "x": 1}}, {"spec": {"replicas": 2, "x": 1}}) == ["spec.replicas"]
    assert not is_subset({"a": {"b": 1}}, {"a": None})


def test_keep_immutable_takes_live_values_only_where_they_differ():
    desired = {"spec": {"replicas": 3, "serviceName": "new", "selector": {"matchLabels": {"a": "1"}},
                        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"size": "2Gi"}}]}}
    live = {"spec": {"replicas": 2, "serviceName": "old", "selector": {"matchLabels": {"a": "1"}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"size": "1Gi"},
                                               "status": {"phase": "Pending"}}]}}
    result, kept = keep_immutable(desired, live, children.STATEFULSET_IMMUTABLE)
    assert kept == ["serviceName", "volumeClaimTemplates"]
    assert result["spec"]["serviceName"] == "old" and result["spec"]["replicas"] == 3
    assert result["spec"]["volumeClaimTemplates"] == [{"metadata": {"name": "data"}, "spec": {"size": "1Gi"}}]
    assert desired["spec"]["serviceName"] == "new"  # input untouched
