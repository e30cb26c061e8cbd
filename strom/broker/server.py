"""Broker: the listener, the log manager, and the shared services handlers
use (durability waits, append notifications, topic changes).

Shutdown (SIGTERM/SIGINT or `stop()`): stop accepting, let every
connection answer the requests it has read, flush every log, write the
clean-shutdown marker.
"""

import asyncio
import functools
import logging
import signal
import time

from strom.broker import router
from strom.broker.budget import RequestBudget
from strom.broker.config import BrokerConfig
from strom.broker.connection import Connection
from strom.broker.notify import AppendNotifier
from strom.broker.waits import LoopWaits
from strom.coordinator import GroupCoordinator
from strom.coordinator.transactions import TransactionCoordinator
from strom.storage import LogManager

log = logging.getLogger(__name__)


class Broker:
    def __init__(self, config: BrokerConfig | None = None):
        self.config = config or BrokerConfig()
        self.logs: LogManager | None = None
        self.notifier = AppendNotifier()
        self.port: int | None = None
        self._server: asyncio.base_events.Server | None = None
        self.connections: set[Connection] = set()
        self.request_budget = RequestBudget(self.config.queued_max_request_bytes)
        self._stopped = asyncio.Event()
        self._off_loop: set[asyncio.Future] = set()  # storage work on worker threads

    async def start(self) -> None:
        started = time.perf_counter()
        router.load_handlers()
        self.loop = asyncio.get_running_loop()
        cfg = self.config
        self.logs = await asyncio.to_thread(
            LogManager, cfg.data_dir, storage=cfg.storage, defaults=cfg.topic_defaults,
            maintenance_interval_s=cfg.log_retention_check_interval_ms / 1000,
            producer_id_expiration_ms=cfg.producer_id_expiration_ms,
        )
        self._waits = LoopWaits(self.logs.flusher, self.loop)
        self.groups = GroupCoordinator(
            self.logs, self.wait_durable,
            initial_rebalance_delay_ms=cfg.group_initial_rebalance_delay_ms,
            offsets_retention_ms=cfg.offsets_retention_minutes * 60_000,
            consumer_heartbeat_interval_ms=cfg.group_consumer_heartbeat_interval_ms,
            consumer_session_timeout_ms=cfg.group_consumer_session_timeout_ms,
        )
        await self.groups.start()
        self.txns = TransactionCoordinator(
            self.logs, self.wait_durable, self.groups, self.notifier,
            transaction_max_timeout_ms=cfg.transaction_max_timeout_ms,
            transactional_id_expiration_ms=cfg.transactional_id_expiration_ms,
            abort_timed_out_interval_ms=cfg.transaction_abort_timed_out_transaction_cleanup_interval_ms,
            remove_expired_interval_ms=cfg.transaction_remove_expired_transaction_cleanup_interval_ms,
        )
        await self.txns.start()
        self._server = await self.loop.create_server(
            lambda: Connection(self), cfg.host, cfg.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if cfg.port == 0 and cfg.advertised_port is None:
            cfg.advertised_port = self.port
        host, port = cfg.advertised
        log.info("strom listening on %s:%d (advertised as %s:%d), %s storage%s, ready in %.0f ms",
                 cfg.host, self.port, host, port, cfg.storage,
                 f" in {cfg.data_dir}" if cfg.storage == "disk" else "",
                 (time.perf_counter() - started) * 1000)

    # -- services for handlers -------------------------------------------------

    def create_topic(self, name: str, partitions: int, configs=None, *, validate_only=False):
        return self.logs.create_topic(name, partitions, configs, validate_only=validate_only)

    def off_loop(self, fn, *args, **kwargs) -> asyncio.Future:
        """Run blocking storage work (directories, fsyncs, topics.json) on a
        worker thread, for an admin handler to await. On the loop, creating
        a topic of 2,000 partitions stopped every client for ~5 s; the
        storage layer is already shared with the flusher and maintenance
        threads, so its locks make this safe."""
        future = self.loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))
        self._off_loop.add(future)  # stop() lets it finish before closing the logs
        future.add_done_callback(self._off_loop.discard)
        return future

    async def delete_topic(self, name: str):
        topic = await self.off_loop(self.logs.delete_topic, name)
        for plog in topic.logs:
            self.notifier.notify(plog)  # parked fetches re-read and see it gone
        return topic

    def wait_durable(self, plog, offset: int) -> asyncio.Future:
        """A future resolved with None once everything below `offset` is
        fsynced (or with the write error that prevented it)."""
        return self._waits.wait(plog, offset)

    # -- connections and lifecycle -------------------------------------------------

    async def stop(self) -> None:
        if self._server is None:
            return
        log.info("shutting down: no new connections, finishing in-flight requests")
        self._server.close()
        connections = list(self.connections)
        for conn in connections:
            conn.shutdown()
        self.notifier.wake_all()  # parked fetches answer now with what they have
        if connections:
            await asyncio.wait([c.closed for c in connections], timeout=5)
        for conn in list(self.connections):
            conn.transport.abort()
        await self._server.wait_closed()
        self._server = None
        await self.txns.stop()
        await self.groups.stop()
        if self._off_loop:  # a creation or deletion still running on its thread
            await asyncio.wait(list(self._off_loop))
        await asyncio.to_thread(self.logs.close)
        log.info("all logs flushed; clean shutdown")
        self._stopped.set()

    async def serve_forever(self) -> None:
        """Start, run until SIGTERM or SIGINT, then stop cleanly."""
        await self.start()
        await self._serve_until_signal()

    async def _serve_until_signal(self, on_ready=None) -> None:
        """Run until SIGTERM or SIGINT, then stop. `on_ready` runs once the
        handlers are in place: a signal sent as soon as it has announced
        readiness is a clean stop, not the default death by signal."""
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        if on_ready is not None:
            on_ready()
        await stopping.wait()
        await self.stop()

