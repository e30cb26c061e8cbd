"""EmbeddedBroker: the real broker on a background thread, for tests and apps.

    with EmbeddedBroker() as broker:              # memory, ephemeral port
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})

Given a `data_dir`, storage is on disk there; `storage="disk"` without one
uses a temporary directory removed on exit; otherwise storage="memory"
keeps nothing on disk. The same server code runs as
`strom serve`, over real loopback sockets.
"""

import asyncio
import shutil
import tempfile
import threading

from strom.broker import Broker, BrokerConfig


class EmbeddedBroker:
    def __init__(self, data_dir: str | None = None, storage: str | None = None, port: int = 0,
                 host: str = "127.0.0.1", **config):
        # A data directory means disk; nothing given means memory.
        storage = storage or ("disk" if data_dir else "memory")
        self._tmp = None
        if storage == "disk" and data_dir is None:
            self._tmp = data_dir = tempfile.mkdtemp(prefix="strom-")
        cfg = BrokerConfig(host=host, port=port, data_dir=data_dir, storage=storage)
        for key, value in config.items():
            cfg.set(key, value)
        self.broker = Broker(cfg)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    @property
    def bootstrap_servers(self) -> str:
        host, port = self.broker.config.advertised
        return f"{host}:{port}"

    @property
    def port(self) -> int:
        return self.broker.port

    def start(self) -> "EmbeddedBroker":
        ready = threading.Event()

        def run():
            loop = self._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self.broker.start())
            except BaseException as e:
                self._error = e
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="strom-embedded", daemon=True)
        self._thread.start()
        ready.wait()
        if self._error:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    async def _shutdown(self) -> None:
        await self.broker.stop()
        # What clients left behind (e.g. a long-poll fetch on a connection
        # they closed) is cancelled here, as asyncio.run does for `strom serve`.
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
