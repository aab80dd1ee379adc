"""`python -m dataclay_operator`: run the operator (settings from DC_OPERATOR_* variables)."""
from __future__ import annotations

import logging
import os
import sys

import kopf

from dataclay_operator.config import load_config


def main() -> int:
    config = load_config(os.environ)
    kopf.configure(verbose=os.environ.get("DC_OPERATOR_DEBUG") == "1", log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("dataclay_operator").setLevel(logging.INFO)
    if os.environ.get("DC_OPERATOR_DEBUG") != "1":  # "Handler ... succeeded" for every watch event
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    import dataclay_operator.handlers  # noqa: F401 - registers the handlers with kopf

    kopf.run(
        standalone=True,  # no kopf peering objects/RBAC: replicas elect a leader on a Lease (leader.py)
        clusterwide=config.clusterwide,
        namespaces=config.namespaces,
        liveness_endpoint=config.liveness,
        memo=kopf.Memo(config=config),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
