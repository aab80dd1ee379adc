"""A backend's recovery at start: agree with the directory, which is the authority, on what
this backend owns. Incoming moves it committed are activated, others discarded; objects stored
here that it does not give us are dropped (moved away, or never acknowledged); entries it gives
us that are not stored here are removed from it (never acknowledged either); prepared
consolidations are resolved with the metadata service."""
from __future__ import annotations

from dataclay_backend import faults
from dataclay_backend.directory_client import DirectoryClient
from dataclay_backend.mover import Mover
from dataclay_backend.objects import LocalObjects
from dataclay_backend.versioning import Versioning


def recover(objects: LocalObjects, directory: DirectoryClient, mover: Mover, versioning: Versioning) -> tuple[int, int]:
    """Returns how many stale objects were dropped here and from the directory."""
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
