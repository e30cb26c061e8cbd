"""The asyncio broker: listener, connections, router and API handlers."""

from strom.broker.config import BrokerConfig
from strom.broker.server import Broker

__all__ = ["Broker", "BrokerConfig"]
