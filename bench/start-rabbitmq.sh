#!/usr/bin/env bash
# Install and start RabbitMQ with the stream plugin (port 5552) for the
# peers benchmark. Debian's packages; root, as on this project's machines.
set -euo pipefail
if ! command -v rabbitmq-server >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
rabbitmq-plugins enable --offline rabbitmq_stream >/dev/null
if ! (exec 3<>/dev/tcp/127.0.0.1/5552) 2>/dev/null; then
    rabbitmq-server -detached
    for _ in $(seq 1 60); do
        (exec 3<>/dev/tcp/127.0.0.1/5552) 2>/dev/null && exit 0
        sleep 1
    done
    echo "RabbitMQ Streams did not start" >&2
    exit 1
fi
