"""Kubernetes operator for dataClay-compatible object stores (`DataClay` custom resources).

Importable as `dataclay_operator` only (never `operator`, which is a stdlib module). The pure parts
(spec parsing, the CRD, children, status, scale-down plans) import nothing from Kubernetes, so they
are tested as data; `reconcile`, `controller` and `handlers` do the I/O.
"""
