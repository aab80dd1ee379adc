"""Patch-if-different: compare only the fields we own."""
from dataclay_operator import children
from dataclay_operator.compare import changed_paths, is_subset, keep_immutable


def test_server_defaults_are_not_differences():
    desired = {"spec": {"ports": [{"port": 1, "name": "grpc"}], "type": "ClusterIP"}}
    live = {"spec": {"ports": [{"port": 1, "name": "grpc", "protocol": "TCP"}], "type": "ClusterIP",
                     "clusterIP": "10.0.0.7"}, "status": {}}
    assert is_subset(desired, live)


def test_changed_and_removed_items_are_differences():
    live = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    assert not is_subset({"env": [{"name": "A", "value": "1"}]}, live)  # B removed
    assert not is_subset({"env": [{"name": "A", "value": "9"}, {"name": "B", "value": "2"}]}, live)
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


def test_changed_paths_are_real_differences_in_both_directions_but_not_status_or_bookkeeping():
    live = {"kind": "StatefulSet", "metadata": {"name": "s", "resourceVersion": "7", "generation": 3,
                                                "managedFields": [{"manager": "x"}], "labels": {"a": "1"}},
            "spec": {"replicas": 2, "template": {"resources": {"limits": {"memory": "1Gi"}}}},
            "status": {"readyReplicas": 1}}
    same = {**live, "metadata": {**live["metadata"], "resourceVersion": "8", "generation": 4, "managedFields": []},
            "status": {}}
    assert changed_paths(live, same) == []
    dropped = {**live, "spec": {"replicas": 2, "template": {"resources": {}}}}  # a field we no longer apply
    assert changed_paths(live, dropped) == ["spec.template.resources.limits"]
    relabelled = {**live, "metadata": {**live["metadata"], "labels": {"a": "1", "b": "2"}}}
    assert changed_paths(live, relabelled) == ["metadata.labels.b"]
