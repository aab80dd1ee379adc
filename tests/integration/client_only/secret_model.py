"""A model module that exists only on the client (not on any backend's model path)."""
from dataclay import DataClayObject


class Unknown(DataClayObject):
    value: int
