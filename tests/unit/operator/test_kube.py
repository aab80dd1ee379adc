"""REST paths of the objects the operator manages."""
import pytest

from dataclay_operator.kube import object_path, resource_path


@pytest.mark.parametrize("args, path", [
    (("v1", "pods", "ns"), "/api/v1/namespaces/ns/pods"),
    (("apps/v1", "statefulsets", "ns", "s"), "/apis/apps/v1/namespaces/ns/statefulsets/s"),
    (("dataclay.bsc.es/v1alpha1", "dataclays", "ns", "d", "status"),
     "/apis/dataclay.bsc.es/v1alpha1/namespaces/ns/dataclays/d/status"),
    (("apiextensions.k8s.io/v1", "customresourcedefinitions", None, "x.y"),
     "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x.y"),
])
def test_resource_path(args, path):
    assert resource_path(*args) == path


def test_object_path():
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dc-metadata", "namespace": "a"}}
    assert object_path(obj) == "/api/v1/namespaces/a/services/dc-metadata"
