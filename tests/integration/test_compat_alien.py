"""AlienDataClayObject (dataClay 4): an object of a class that is not a DataClayObject (a dict, a
list, a configured value type) made persistent; its methods run where it lives, across backend
processes, and survive a restart and a move."""
from __future__ import annotations

import datetime

import pytest

from dataclay import AlienDataClayObject, Client
from dataclay import operations as ops
from dataclay.transport import run_blocking
from dataclay.exceptions import ActiveMethodNotFoundError, ClassNotAllowedError, DataClayException


def test_an_alien_dict_lives_on_a_backend_and_its_methods_run_there(make_cluster):
    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        first, second = list(client.get_backends())
        prices = AlienDataClayObject({"apple": 1})
        assert isinstance(prices, AlienDataClayObject) and not prices.is_persistent
        assert prices["apple"] == 1 and len(prices) == 1  # before make_persistent: the dict itself
        prices.make_persistent(alias="prices", backend_id=second)
        prices.update({"pear": 2})  # runs on the backend
        prices["fig"] = 3
        del prices["apple"]
        assert prices["pear"] == 2 and len(prices) == 2 and "fig" in prices and "apple" not in prices
        assert prices.get("kiwi", 0) == 0 and prices.copy() == {"pear": 2, "fig": 3}
        with pytest.raises(DataClayException):  # a view cannot travel: typed, and the object is intact
            prices.keys()
        assert prices.copy() == {"pear": 2, "fig": 3}
        assert AlienDataClayObject.get_by_alias("prices") is prices

        cluster.restart_backend("backend-1")  # stored: the changes survive
        assert prices.copy() == {"pear": 2, "fig": 3}
        prices.move(first)
        assert prices.backends == {first} and prices.pop("fig") == 3 and prices.copy() == {"pear": 2}

        items = AlienDataClayObject([3, 1, 2])
        items.make_persistent(backend_id=first)
        items.append(0)
        items.sort()
        assert items.copy() == [0, 1, 2, 3] and items.index(2) == 2 and items[-1] == 3

        day = AlienDataClayObject(datetime.date(2024, 2, 29))  # a standard value type
        day.make_persistent(backend_id=second)
        assert day.year == 2024 and day.isoformat() == "2024-02-29"  # an attribute, a method


class NotAllowed:
    pass


def test_an_alien_of_a_type_outside_the_allow_list_is_refused_and_hidden_methods_are_not_called(client):
    with pytest.raises(ClassNotAllowedError, match="DC_PICKLE_ALLOW"):
        AlienDataClayObject(NotAllowed())
    plain = AlienDataClayObject({"a": 1})
    plain.make_persistent()
    rt = client.runtime
    for hidden in ("__reduce_ex__", "__class__", "__init_subclass__"):  # only public methods run there
        with pytest.raises(ActiveMethodNotFoundError):
            run_blocking(ops.call_method(rt, rt.blocking, plain, hidden, (), {}))
    with pytest.raises(AttributeError):
        plain.no_such_method()
