#!/usr/bin/env bash
# Install RabbitMQ with the stream plugin (port 5552) for the peers
# benchmark, which starts the server for its own round only. Debian's
# packages; root, as on this project's machines.
set -euo pipefail
if ! command -v rabbitmq-server >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
rabbitmq-plugins enable --offline rabbitmq_stream >/dev/null
