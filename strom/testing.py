"""pytest plugin: a `strom_broker` fixture running an EmbeddedBroker.

    def test_orders(strom_broker):
        p = Producer({"bootstrap.servers": strom_broker.bootstrap_servers})

Registered through the `pytest11` entry point, so installing strom is
enough. The broker is in memory, on an ephemeral port, one per test.
"""

import pytest


@pytest.fixture
def strom_broker():
    from strom.embedded import EmbeddedBroker

    with EmbeddedBroker(storage="memory") as broker:
        yield broker
