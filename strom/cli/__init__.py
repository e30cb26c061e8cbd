"""The `strom` command: `serve` runs a broker; the client commands use
confluent-kafka, so they work against any Kafka-compatible cluster."""
