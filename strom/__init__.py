"""Strom: a Kafka-protocol event-streaming broker that installs with pip."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy so `import strom.records` stays free of asyncio and the broker.
    if name == "EmbeddedBroker":
        from strom.embedded import EmbeddedBroker

        return EmbeddedBroker
    raise AttributeError(name)
