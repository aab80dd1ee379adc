"""New objects registered in the directory after their store was acknowledged, and never later
than anyone can ask the directory about them.

A client's make_persistent (StoreObjects, StoreRawObject, without an alias) costs one round trip:
the backend stores the objects together with their directory entries (table `unregistered`, one
SQLite transaction), replies, and registers the entries right after, in the background and in
batches. Objects an active method creates go the same way: their entries are stored with the
call's changes (request.py, `defer` / `deferred`). The acknowledgement is true from the reply on, because every way to reach the object
through the directory first makes the entries it could need registered:

- this backend's own directory calls (moves, versions, drops, drains, recovery at start: every
  DirectoryClient call) send what is pending first (`flush`);
- a question the directory cannot answer about an object id (LocateObject, AddAlias, GetAliases:
  dataclay.operations.ask_directory) makes every backend send what is pending
  (FlushRegistrations) and asks again; a backend that does not answer is named in the error;
- a drain (and dataclay.admin.set_draining) first switches the backend to registering before
  it replies (`before_drain`), then marks it draining and lists what it owns; a backend that
  starts with the mark set registers before it replies from the start (`register_first`).

A crash after the reply loses nothing: the entries are stored with the objects and sent at the
next start, before recovery compares the store with the directory. The directory accepts such
entries even while the backend is draining (they are stored already). An entry refused because
another backend's object has that id (a client that made up an id) drops the object here,
logged as an error: no other refusal drops anything (the entry is sent again later).

Versions consolidated or discarded here go the same way (`retired`, pb.Retired): their entries,
stored in the consolidation's own transaction, go with the next batch; the directory retires
the versions it lists, and registers retired those whose live entries had not gone yet (one
call for both).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, NamedTuple
from uuid import UUID

from dataclay.exceptions import BackendUnavailableError, DataClayException, ResourceExhaustedError
from dataclay.protocol import MAX_MESSAGE
from dataclay.protocol import dataclay_pb2 as pb
from dataclay_backend import faults
from dataclay_backend.backoff import RESOLVE_LATER
from dataclay_backend.object_store import ObjectStore, StoredObject
from dataclay_backend.validation import IDS_PER_PART

log = logging.getLogger(__name__)

# After the first store wakes the background sender, it waits this long for more to send with
# it: one request and two SQLite commits (directory, here) for many stores, which otherwise
# compete for the same cores with the stores that follow (a client storing one object after the
# other). Nobody waits for it: whoever needs an entry registered sends it at once (flush).
GATHER_SECONDS = 0.005

Send = Callable[[list[pb.ObjectEntry]], list[UUID]]  # RegisterObjects(stored=True): the ids refused

# A request's share of the entries, by their encoded size (a class path is up to 512 characters):
# within half the message limit (DC_MAX_MESSAGE), and within the ids-per-call cap.
PART_BYTES = min(512 * 1024, MAX_MESSAGE // 2)


class Unsent(NamedTuple):
    """An entry to send, and the bytes it is stored as (table `unregistered`): what the sender
    confirms, by identity in memory and by those bytes in the store."""

    entry: pb.ObjectEntry
    stored: bytes


def unsent(entries: list[pb.ObjectEntry]) -> list[Unsent]:
    return [Unsent(entry, entry.SerializeToString()) for entry in entries]


def stored_rows(items: list[Unsent]) -> list[tuple[bytes, bytes]]:
    """(object id, entry) rows of table `unregistered` (ObjectStore.write, registered)."""
    return [(item.entry.object_id, item.stored) for item in items]


class Registrations:
    def __init__(self, store: ObjectStore, send: Send, drop_here: Callable[[list[UUID]], None]) -> None:
        self._store = store
        self._send = send
        self._drop_here = drop_here
        self._pending: dict[bytes, Unsent] = {  # by object id
            object_id.bytes: Unsent(pb.ObjectEntry.FromString(raw), raw) for object_id, raw in store.unregistered().items()}
        self._sending = threading.Lock()  # one sender at a time: entries leave in the order stored
        self._state = threading.Condition()
        self._in_flight = 0  # stores between deciding to register later and handing their entries here
        self._synchronous = False  # before a drain: new objects are registered before the reply
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ stores
    def store_new(self, rows: list[StoredObject], entries: list[pb.ObjectEntry]) -> bool:
        """Store new objects and register them after the reply. False (nothing done) when this
        backend registers before replying now (a drain began): the caller does that instead."""
        items = self.defer(entries)
        if items is None:
            return False
        written: set[bytes] = set()
        try:
            written = {object_id.bytes for object_id in self._store.store_new(rows, [item.stored for item in items])}
        finally:
            self.deferred([item for item in items if item.entry.object_id in written])
        return True

    def defer(self, entries: list[pb.ObjectEntry]) -> list[Unsent] | None:
        """The first half of storing new objects to register after the reply: the items to store
        in the caller's transaction (table `unregistered`: ObjectStore.store_new, or write with
        `unregistered=stored_rows(items)`), or None when this backend registers before replying
        now (a drain began: the caller registers first). The caller must then call `deferred`,
        whatever happens: a drain waits for it."""
        with self._state:
            if self._synchronous:
                return None
            self._in_flight += 1
        return unsent(entries)

    def deferred(self, stored: list[Unsent]) -> None:
        """The second half: these items were stored (none, if the store failed); they go with
        the next batch."""
        try:
            with self._state:
                self._pending.update((item.entry.object_id, item) for item in stored)
        finally:
            with self._state:
                self._in_flight -= 1
                self._state.notify_all()
        if stored:
            self._wake.set()

    def register_first(self, why: str) -> None:
        """From now on new objects are registered before the reply (a draining backend: the
        directory refuses them, and the caller learns it)."""
        with self._state:
            if not self._synchronous:
                log.info("new objects are registered before the reply from now on: %s", why)
            self._synchronous = True

    def reported(self) -> list[Unsent]:
        """After a restore from a backup the backend reports everything it stores instead
        (recovery.reconcile): nothing is pending any more. Returns the retirements of versions
        (the report omits them; they stay stored), for `retired` once the reconcile is done:
        until then the restored directory refuses this backend's registrations."""
        with self._state:
            items = list(self._pending.values())
            self._pending.clear()
        self._store.registered(stored_rows([item for item in items if not item.entry.retired]))
        return [item for item in items if item.entry.retired]

    def retired(self, items: list[Unsent]) -> None:
        """Versions consolidated or discarded here (entries with pb.Retired), stored already with
        the consolidation (ObjectStore.write(unregistered=stored_rows(items))): they go with the
        next batch, replacing a live entry not sent yet (a send under way confirms only what it
        carried: _confirmed)."""
        with self._state:
            self._pending.update((item.entry.object_id, item) for item in items)
        self._wake.set()

    def pending(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ sending
    def flush(self, before_drain: bool = False) -> None:
        """Register everything pending now, from the calling thread (a typed error if the
        directory cannot be reached: what is pending stays and goes later). `before_drain`:
        from now on new objects are registered before the reply, and stores already past that
        decision are waited for, so that nothing this backend acknowledged is left unlisted."""
        if before_drain:
            self.register_first("a drain began")
            with self._state:
                self._state.wait_for(lambda: self._in_flight == 0)
        if not self._pending:
            return
        with self._sending:
            self._send_pending()

    def _send_pending(self) -> None:
        with self._state:
            items = list(self._pending.values())
        for part in _parts(items):
            self._send_part(part)

    def _send_part(self, items: list[Unsent]) -> None:
        try:
            refused = {object_id.bytes for object_id in self._send([item.entry for item in items])}
        except (BackendUnavailableError, ResourceExhaustedError):
            raise  # the directory is down, slow or busy: they go with the next try
        except DataClayException as refusal:
            # the directory refuses this backend's registrations (e.g. it was restored from a
            # backup while this backend ran on: ClusterMismatchError): what is pending stays and
            # goes when that changes (a restart); new stores register before their reply from
            # now on, so their callers get the refusal instead of an acknowledgement
            if not self._synchronous:
                log.error("the directory refuses this backend's registrations: %s", refusal)
            self.register_first("the directory refuses registrations sent after the reply")
            raise
        for item in items:
            if item.entry.object_id in refused:
                self._refused(item.entry)
        self._confirmed(items)

    def _confirmed(self, items: list[Unsent]) -> None:
        """Sent: no longer pending, unless replaced meanwhile (a version retired while its live
        entry was on its way: the retired one goes next, and its stored bytes differ)."""
        with self._state:
            for item in items:
                if self._pending.get(item.entry.object_id) is item:
                    del self._pending[item.entry.object_id]
        self._store.registered(stored_rows(items))

    def _refused(self, entry: pb.ObjectEntry) -> None:
        object_id = UUID(bytes=entry.object_id)
        if entry.retired:  # nothing of it is stored here any more
            log.error("version %s (%s) was retired here but the directory lists another object with its id: "
                      "the directory keeps that one", object_id, entry.class_path)
            return
        log.error("object %s (%s) was stored here but the directory lists another object with its id (a client "
                  "that sends ids of its own): it is dropped here, and its store was acknowledged", object_id,
                  entry.class_path)
        self._drop_here([object_id])

    # ------------------------------------------------------------------ background
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="registrations", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """A graceful stop: no more background sends, and what is pending is sent now (if the
        directory does not take it, it goes at the next start: it is stored)."""
        self._closed = True
        self._wake.set()
        try:
            self.flush()
        except DataClayException as exc:
            log.warning("%d new objects are registered at the next start: %s", len(self._pending), exc)

    def _run(self) -> None:
        delay = 0.0
        while not self._closed:
            self._wake.wait(delay or None)
            self._wake.clear()
            if self._closed:
                return
            faults.hit("registrations.background")
            time.sleep(GATHER_SECONDS)  # let stores arriving meanwhile go in the same request
            try:
                if self._pending:
                    with self._sending:
                        self._send_pending()
                delay = 0.0
            except DataClayException as exc:
                delay = RESOLVE_LATER.after(delay)
                log.warning("could not register %d new objects in the directory (again in %.1f s): %s",
                            len(self._pending), delay, exc)
            except Exception:  # never let the thread die: what is pending goes with the next try or flush
                delay = RESOLVE_LATER.after(delay)
                log.exception("registering new objects failed (again in %.1f s)", delay)


def _parts(items: list[Unsent]) -> list[list[Unsent]]:
    """The entries in requests of at most PART_BYTES and IDS_PER_PART entries each."""
    parts: list[list[Unsent]] = [[]]
    size = 0
    for item in items:
        grows = len(item.stored) + 4
        if parts[-1] and (size + grows > PART_BYTES or len(parts[-1]) >= IDS_PER_PART):
            parts.append([])
            size = 0
        parts[-1].append(item)
        size += grows
    return [part for part in parts if part]
