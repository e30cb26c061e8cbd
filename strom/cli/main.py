"""Entry point of the `strom` command.

Only argparse and the one command that runs are imported: `strom serve`
must start in well under a second, and a CLI framework alone costs more
than the broker's own imports.
"""

import logging
import os
import sys

from strom.cli import consume, demo, group, produce, topic, txn
from strom.cli.common import CliError, Parser, command, describe_error


def parser() -> Parser:
    top = Parser(prog="strom", description="Strom: a Kafka-compatible event-streaming broker.")
    sub = top.add_subparsers(metavar="COMMAND", parser_class=Parser)
    p = command(sub, "serve", serve, "Run the broker until SIGTERM or Ctrl-C.", bootstrap=False)
    p.add_argument("--host", help="address to bind [127.0.0.1]")
    p.add_argument("--port", type=int, help="port to bind [9092]")
    p.add_argument("--data-dir", help="where logs live [./strom-data]")
    p.add_argument("--memory", action="store_true", help="keep everything in memory")
    p.add_argument("--advertised-host", help="host clients are told to connect to")
    p.add_argument("--advertised-port", type=int)
    p.add_argument("--config", default=os.environ.get("STROM_CONFIG"),
                   help="a strom.toml file (env STROM_CONFIG)")
    p.add_argument("--log-level")
    for module in (topic, group, txn, produce, consume, demo):
        module.register(sub)
    return top


def serve(args) -> None:
    # kio imports hypothesis when it is installed (to register strategies),
    # which costs ~150 ms of start-up; the broker process never needs it.
    sys.modules.setdefault("hypothesis", None)
    import asyncio

    from strom.cli import malloc

    malloc.tune()

    from strom.broker import Broker, BrokerConfig
    from strom.logsafe import EscapingFormatter

    cfg = BrokerConfig.load(
        args.config, host=args.host, port=args.port, data_dir=args.data_dir,
        advertised_host=args.advertised_host, advertised_port=args.advertised_port,
        log_level=args.log_level, storage="memory" if args.memory else None,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=cfg.log_level.upper(), handlers=[handler])
    broker = Broker(cfg)

    def ready():
        host, port = cfg.advertised
        print(f"\nStrom is ready. Connect with bootstrap.servers={host}:{port}\n"
              f"  strom topic create orders --partitions 3 -b {host}:{port}\n"
              f"  echo hello | strom produce orders -b {host}:{port}\n"
              f"  strom consume orders --from-beginning -b {host}:{port}\n"
              f"  kcat -b {host}:{port} -L\n", flush=True)

    async def run():
        await broker.start()
        await broker._serve_until_signal(on_ready=ready)

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    top = parser()
    args = top.parse_args(argv)
    if not hasattr(args, "run"):
        top.print_help()
        sys.exit(2)
    try:
        args.run(args)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # confluent_kafka.KafkaException and friends: one line, no traceback
        print(f"error: {describe_error(e)}", file=sys.stderr)
    else:
        return
    sys.exit(1)


if __name__ == "__main__":
    main()
