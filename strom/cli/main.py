"""Entry point of the `strom` command."""

import asyncio
import logging
import sys

import typer

from strom.cli import group, topic
from strom.cli.common import friendly
from strom.cli.consume import consume
from strom.cli.demo import demo
from strom.cli.produce import produce

app = typer.Typer(help="Strom: a Kafka-compatible event-streaming broker.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
app.add_typer(topic.app, name="topic")
app.add_typer(group.app, name="group")
app.command("produce")(produce)
app.command("consume")(consume)
app.command("demo")(demo)


@app.command()
@friendly
def serve(
    host: str = typer.Option(None, "--host", help="address to bind [127.0.0.1]"),
    port: int = typer.Option(None, "--port", help="port to bind [9092]"),
    data_dir: str = typer.Option(None, "--data-dir", help="where logs live [./strom-data]"),
    memory: bool = typer.Option(False, "--memory", help="keep everything in memory"),
    advertised_host: str = typer.Option(None, "--advertised-host",
                                        help="host clients are told to connect to"),
    advertised_port: int = typer.Option(None, "--advertised-port"),
    config: str = typer.Option(None, "--config", help="a strom.toml file", envvar="STROM_CONFIG"),
    log_level: str = typer.Option(None, "--log-level"),
):
    """Run the broker until SIGTERM or Ctrl-C."""
    # kio imports hypothesis when it is installed (to register strategies),
    # which costs ~150 ms of start-up; the broker process never needs it.
    sys.modules.setdefault("hypothesis", None)
    from strom.broker import Broker, BrokerConfig

    cfg = BrokerConfig.load(
        config, host=host, port=port, data_dir=data_dir, advertised_host=advertised_host,
        advertised_port=advertised_port, log_level=log_level, storage="memory" if memory else None,
    )
    logging.basicConfig(level=cfg.log_level.upper(),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    broker = Broker(cfg)

    async def run():
        await broker.start()
        host_, port_ = cfg.advertised
        print(f"\nStrom is ready. Connect with bootstrap.servers={host_}:{port_}\n"
              f"  strom topic create orders --partitions 3 -b {host_}:{port_}\n"
              f"  echo hello | strom produce orders -b {host_}:{port_}\n"
              f"  strom consume orders --from-beginning -b {host_}:{port_}\n"
              f"  kcat -b {host_}:{port_} -L\n", flush=True)
        await broker._serve_until_signal()

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
