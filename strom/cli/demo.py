"""`strom demo NAME`: run one of the seed's scenarios on an embedded broker."""

import importlib

from strom.cli.common import command, fail

DEMOS = {
    "ecommerce": "order flow: fan-out to payment, inventory, notification; catch-up; replay",
    "rideshare": "driver locations: ETAs, surge pricing in tumbling windows, a live map",
    "banking": "fraud check in Kafka transactions and a SQLite ledger, exactly once through SIGKILL",
    "eventsourcing": "state rebuilt by replay; snapshots in a compacted topic",
}


def register(subparsers) -> None:
    p = command(subparsers, "demo", demo, "Run an example scenario and print what happens.",
                bootstrap=False)
    p.add_argument("name", help=", ".join(DEMOS))
    p.add_argument("--bootstrap-server", "-b", dest="bootstrap",
                   help="run against this cluster instead of an embedded broker")


def demo(args) -> None:
    name = args.name
    if name not in DEMOS:
        fail(f"unknown demo {name!r}; choose one of: {', '.join(DEMOS)}")
    try:
        app = importlib.import_module(f"examples.{name}.app")
    except ImportError:
        fail("the examples are not installed: run `strom demo` from a checkout of strom")
    from examples.common import broker

    print(f"{name}: {DEMOS[name]}")
    with broker(args.bootstrap) as bootstrap_servers:
        print(f"broker: {bootstrap_servers}")
        app.run(bootstrap_servers)
