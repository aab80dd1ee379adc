"""Tests against a real local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)."""
