"""A backend's recovery at start: agree with the directory, which is the authority, on what
this backend owns. Incoming moves it committed are activated, others discarded; objects stored
here that it does not give us are dropped (moved away, or never acknowledged); entries it gives
us that are not stored here are removed from it (never acknowledged either); prepared
consolidations are resolved with the metadata service.

After the metadata database was restored from a backup (the directory says so when we register)
the directory is older than this store and is not the authority: `reconcile` reports what is
stored here instead, and deletes nothing (restore_epoch.py has the rule and why)."""
from __future__ import annotations

import logging

from dataclay_backend import faults
from dataclay_backend.directory_client import DirectoryClient
from dataclay_backend.mover import Mover
from dataclay_backend.objects import LocalObjects
from dataclay_backend.versioning import Versioning

log = logging.getLogger(__name__)


def recover(objects: LocalObjects, directory: DirectoryClient, mover: Mover, versioning: Versioning) -> tuple[int, int]:
    """Returns how many stale objects were dropped here and from the directory. New objects
    stored before a crash and not registered yet are registered first (every directory call
    sends them: registrations.py), so they are not taken for stale."""
    assigned = directory.owned_by(objects.backend_id)
    faults.hit("recovery.after_listing")
    assigned |= mover.recover(assigned)  # a move to us may have committed since the listing
    stored = objects.store.classes()
    stale_local = [object_id for object_id in stored if object_id not in assigned]
    stale_directory = [object_id for object_id in assigned if object_id not in stored]
    if stale_local:
        objects.forget_stored(stale_local)
    if stale_directory:
        directory.drop(stale_directory)
    objects.adopt({object_id: path for object_id, path in stored.items() if object_id in assigned})
    versioning.recover()
    return len(stale_local), len(stale_directory)


def reconcile(objects: LocalObjects, directory: DirectoryClient, mover: Mover, versioning: Versioning) -> tuple[int, int]:
    """Recovery in the restored epoch: what is stored here is reported and served if the
    directory gives it to us; nothing is deleted here or dropped from the directory, so it
    returns (0, 0) (what recover returns: how many stale objects were dropped)."""
    registrations = directory.registrations
    retirements = registrations.reported() if registrations is not None else []  # the report names the others
    held = objects.store.classes()
    reply = directory.reconcile(objects.backend_id, held, (), done=False)
    assigned = directory.owned_by(objects.backend_id)
    assigned |= mover.recover(assigned, discard=False)
    stored = objects.store.classes()  # with the moves recover() activated
    missing = [object_id for object_id in assigned if object_id not in stored]
    # listed here, not stored here: the directory keeps them for their holder; and we are done
    directory.reconcile(objects.backend_id, {}, missing, done=True)
    if retirements:  # versions retired here, not yet in the directory: it takes them from now on
        registrations.retired(retirements)
    mine = {object_id: path for object_id, path in stored.items() if object_id in assigned}
    objects.adopt(mine)
    versioning.recover()
    log.warning("restored directory: backend %s serves %d objects (%d adopted, %d reassigned to it), keeps %d it "
                "does not serve (another backend holds them), %d listed here are not stored here",
                objects.name, len(mine), reply.adopted, reply.reassigned, len(reply.refused), len(missing))
    return 0, 0
