"""Many idle connections and concurrent producers are held: a slice of
`python -m bench.load` (whose full run is 5,000 idle connections and 200
producers)."""

import asyncio

from bench.load import run


def test_idle_connections_and_concurrent_producers_are_held(capsys):
    assert asyncio.run(run(idle=1000, producers=20, records=50)) == 0, capsys.readouterr().out
