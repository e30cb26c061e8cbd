"""Shared CLI plumbing: the --bootstrap-server option and one-line errors."""

import functools
import os
import sys

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

DEFAULT_BOOTSTRAP = os.environ.get("STROM_BOOTSTRAP_SERVER", "localhost:9092")

BootstrapOption = typer.Option(
    DEFAULT_BOOTSTRAP, "--bootstrap-server", "-b", help="Kafka address (host:port[,...]).",
    envvar="STROM_BOOTSTRAP_SERVER",
)


class CliError(Exception):
    pass


def fail(message: str) -> None:
    raise CliError(message)


def friendly(fn):
    """Turn any client or usage error into one line on stderr and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CliError as e:
            err_console.print(f"[red]error:[/red] {e}")
        except Exception as e:  # confluent_kafka.KafkaException and friends
            err_console.print(f"[red]error:[/red] {describe_error(e)}")
        raise typer.Exit(1)

    return wrapper


def describe_error(e: Exception) -> str:
    from confluent_kafka import KafkaError, KafkaException

    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        err = e.args[0]
        if err.code() in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN):
            return f"cannot reach a Kafka broker ({err.str()})"
        return err.str()
    return str(e) or type(e).__name__


def client_config(bootstrap: str, **extra) -> dict:
    return {"bootstrap.servers": bootstrap, "log_level": 0, "logger": _quiet(), **extra}


def _quiet():
    import logging

    logger = logging.getLogger("strom.cli.client")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"{what} must look like key=value, got {pair!r}")
        out[key] = value
    return out


def check_reachable(admin, bootstrap: str, timeout: float = 5.0):
    try:
        return admin.list_topics(timeout=timeout)
    except Exception as e:
        fail(f"cannot reach a Kafka broker at {bootstrap}: {e.args[0].str() if e.args and hasattr(e.args[0], 'str') else e}")


def stdin_is_tty() -> bool:
    return sys.stdin.isatty()
