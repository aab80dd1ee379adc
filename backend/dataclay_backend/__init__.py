"""dataClay servers: the metadata service, the backend, their storage, and the local cluster."""
