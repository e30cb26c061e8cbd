"""Shared CLI plumbing: the --bootstrap-server option, one-line errors and
plain-text tables. The CLI uses only argparse so that `strom serve` starts
without importing any command-line framework."""

import argparse
import os
import sys

DEFAULT_BOOTSTRAP = os.environ.get("STROM_BOOTSTRAP_SERVER", "localhost:9092")


class CliError(Exception):
    pass


def fail(message: str):
    raise CliError(message)


class Parser(argparse.ArgumentParser):
    """Usage errors as one `error:` line (plus where to look), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def add_bootstrap(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap-server", "-b", dest="bootstrap", default=DEFAULT_BOOTSTRAP,
                        help="Kafka address, host:port[,...] (env STROM_BOOTSTRAP_SERVER) "
                             f"[{DEFAULT_BOOTSTRAP}]")


def command(subparsers, name: str, run, help: str, bootstrap: bool = True) -> argparse.ArgumentParser:
    """A sub-command whose parsed arguments are passed to `run(args)`."""
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.set_defaults(run=run)
    if bootstrap:
        add_bootstrap(parser)
    return parser


def command_group(subparsers, name: str, help: str):
    """A command with sub-commands of its own (`strom topic create`)."""
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.set_defaults(run=lambda _args: parser.print_help())
    return parser.add_subparsers(metavar="COMMAND", parser_class=Parser)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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


def parse_pairs(pairs: list[str] | None, what: str) -> dict[str, str]:
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
        detail = e.args[0].str() if e.args and hasattr(e.args[0], "str") else e
        fail(f"cannot reach a Kafka broker at {bootstrap}: {detail}")


def print_table(headers: list[str], rows: list[list]) -> None:
    """Columns aligned with two spaces between them, header first."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def say(message: str) -> None:
    """Status for the user, on stderr so that stdout stays data."""
    print(message, file=sys.stderr)
