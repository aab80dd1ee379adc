"""The DataClay's TLS material as data (dataclay_operator.credentials): identities, SANs, what a
second pass keeps, and the reconciler's Secrets against the in-memory API."""
from cryptography import x509

from dataclay.security import Identity
from dataclay_operator import api, children, credentials
from dataclay_operator.reconcile import Reconciler
from dataclay_operator.config import OperatorConfig
from dataclay_operator.events import EventRecorder
from dataclay_operator.kube import resource_path
from dataclay_operator.reconcile import dataclay_path
from fake_kube import FakeKube

DC = {"metadata": {"name": "store", "namespace": "apps", "uid": "u-1"}}


def sans(pem: bytes) -> list[str]:
    cert = x509.load_pem_x509_certificate(pem)
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def authority() -> credentials.Authority:
    return credentials.Authority(*credentials.ca_data(None).values())


def test_metadata_and_backend_certificates_name_the_services_dns_names():
    ca = authority()
    meta = credentials.complete(None, ca, credentials.plans(DC)[0])
    assert sans(meta["metadata.pem"]) == ["store-metadata", "store-metadata.apps", "store-metadata.apps.svc",
                                          "store-metadata.apps.svc.cluster.local"]
    backends = credentials.complete(None, ca, credentials.backend_plan(DC, 2))
    advertised = {e["name"]: e.get("value") for e in children.backend_statefulset(
        {**DC, "metadata": {**DC["metadata"]}}, _spec(), 2)["spec"]["template"]["spec"]["containers"][0]["env"]}
    host = advertised["DC_ADVERTISE_HOST"].replace("$(POD_NAME)", "store-backend-1")
    assert host in sans(backends["backend.store-backend-1.pem"])
    assert sorted(backends) == ["backend.store-backend-0.key", "backend.store-backend-0.pem",
                                "backend.store-backend-1.key", "backend.store-backend-1.pem", "ca.pem"]
    for pem in (meta["metadata.pem"], backends["backend.store-backend-0.pem"]):
        x509.load_pem_x509_certificate(pem).verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert))


def _spec():
    from dataclay_operator.spec import parse_spec

    return parse_spec({"replicas": 2}, default_image="i")


def test_a_complete_secret_is_kept_and_only_missing_ordinals_are_issued():
    ca = authority()
    two = credentials.complete(None, ca, credentials.backend_plan(DC, 2))
    assert credentials.complete(two, ca, credentials.backend_plan(DC, 2)) is None  # nothing to write
    three = credentials.complete(two, ca, credentials.backend_plan(DC, 3))
    assert {k: three[k] for k in two} == two and "backend.store-backend-2.key" in three
    assert credentials.ca_data({"ca.pem": ca.cert, "ca.key": ca.key}) is None  # a CA is never replaced


def test_a_secret_of_another_ca_is_issued_again():
    old, new = authority(), authority()
    held = credentials.complete(None, old, credentials.plans(DC)[1])
    again = credentials.complete(held, new, credentials.plans(DC)[1])
    assert again["ca.pem"] == new.cert and again["client.pem"] != held["client.pem"]


def test_the_reconciler_makes_the_secrets_once_and_a_second_pass_changes_nothing():
    kube = FakeKube()
    kube.create(dataclay_path("ns"), {"apiVersion": api.API_VERSION, "kind": api.KIND,
                                      "metadata": {"name": "store", "namespace": "ns"}, "spec": {"replicas": 2}})
    config = OperatorConfig(default_image="i")
    Reconciler(kube=kube, config=config, events=EventRecorder(kube)).reconcile("ns", "store")
    paths = [resource_path("v1", "secrets", "ns", n) for n in ("store-ca", "store-metadata-tls", "store-backend-tls",
                                                               "store-client-credentials", "store-admin-credentials")]
    first = {p: kube.get_object(p)["data"] for p in paths}
    assert "ca.key" in first[paths[0]] and all("ca.key" not in d for p, d in first.items() if p != paths[0])
    assert sorted(first[paths[3]]) == ["ca.pem", "client.key", "client.pem"]
    restarted = Reconciler(kube=kube, config=config, events=EventRecorder(kube))  # a new operator process
    before = len(kube.calls)
    restarted.reconcile("ns", "store")
    assert [c.path for c in kube.writes(before) if "/secrets/" in c.path] == []
    assert {p: kube.get_object(p)["data"] for p in paths} == first
    assert str(restarted.admin_credentials({"metadata": {"namespace": "ns", "name": "store"}}).identity) == "admin"
    assert Identity.parse("backend:store-backend-0").stem + ".pem" in first[paths[2]]
