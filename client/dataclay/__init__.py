"""dataClay-compatible distributed active objects.

    from dataclay import Client, DataClayObject, activemethod
"""
from dataclay.alien import AlienDataClayObject
from dataclay.client import Client
from dataclay.dataclay_object import DataClayObject, activemethod
from dataclay.stub import StubDataClayObject
from dataclay.transport import BackendInfo

__all__ = ["AlienDataClayObject", "Client", "DataClayObject", "StubDataClayObject", "activemethod", "BackendInfo"]
