"""One client connection: frames in, handlers, responses out in order.

Requests are read as they arrive and each handler is called right away
(appends happen in arrival order, before the handler returns); a handler
that must wait returns a coroutine, run as a task, so a producer may
pipeline many requests while earlier ones wait for their fsync. Responses are written strictly in request order
by a writer task. Produce with acks=0 gets no response.

Limits: a frame larger than `socket.request.max.bytes` is refused from its
4-byte length before its body is read; a frame that does not parse, an
unknown API key or an unsupported version (other than ApiVersions, which
answers) closes this connection only. Idle connections are closed after
`connections.max.idle.ms`.
"""

import asyncio
import logging
import struct

from strom.broker import router
from strom.broker.context import NO_RESPONSE, RawResponse, RequestContext
from strom.broker.handlers.api_versions import unsupported_version_response
from strom.protocol import framing
from strom.protocol.errors import KafkaError
from strom.protocol.framing import MalformedFrameError
from strom.protocol.schemas import encode, read_request

log = logging.getLogger(__name__)

_SIZE = struct.Struct(">i")
_MAX_IN_FLIGHT = 256


class Connection:
    def __init__(self, broker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.broker = broker
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self._pending: asyncio.Queue = asyncio.Queue(_MAX_IN_FLIGHT)

    async def serve(self) -> None:
        writer_task = asyncio.create_task(self._write_responses())
        try:
            await self._read_requests()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except MalformedFrameError as e:
            log.warning("closing connection from %s: %s", self.peer, e)
        except TimeoutError:
            log.info("closing idle connection from %s", self.peer)
        finally:
            # Let the writer answer what was read (in-flight requests), unless
            # it already stopped on an error and nobody drains the queue.
            if not writer_task.done():
                await self._pending.put(None)
                try:
                    await writer_task
                except Exception:
                    pass
            self.writer.close()

    async def _read_requests(self) -> None:
        cfg = self.broker.config
        idle_s = cfg.connections_max_idle_ms / 1000
        while True:
            async with asyncio.timeout(idle_s):
                size = _SIZE.unpack(await self.reader.readexactly(4))[0]
            if size < 0 or size > cfg.socket_request_max_bytes:
                raise MalformedFrameError(
                    f"request size {size} is outside 0..{cfg.socket_request_max_bytes} "
                    "(socket.request.max.bytes)"
                )
            frame = await self.reader.readexactly(size)
            header = framing.parse_request_header(frame, router.is_flexible)
            if header.api_key == framing.API_VERSIONS and not router.supports(
                header.api_key, header.api_version
            ):
                # Answer in the v0 layout, which every client can read, with
                # the versions we do support; the client retries with one.
                reply = RawResponse([unsupported_version_response()])
                await self._pending.put((header, _done(reply), False))
                continue
            if not router.supports(header.api_key, header.api_version):
                raise MalformedFrameError(
                    f"unsupported api key {header.api_key} version {header.api_version} "
                    f"(client {header.client_id!r})"
                )
            try:
                request, _ = read_request(header.api_key, header.api_version, frame,
                                          header.body_offset)
            except Exception as e:
                raise MalformedFrameError(
                    f"cannot decode api key {header.api_key} v{header.api_version}: {e}"
                ) from None
            handler = router.HANDLERS[header.api_key].handler
            ctx = RequestContext(self.broker, header, self.peer)
            try:
                result = handler(ctx, request)
            except Exception as e:  # reported by the writer, in request order
                task = _failed(e)
            else:
                task = asyncio.ensure_future(result) if asyncio.iscoroutine(result) else _done(result)
            # ApiVersions answers with a v0 response header whatever its version.
            flexible = header.flexible and header.api_key != framing.API_VERSIONS
            await self._pending.put((header, task, flexible))

    async def _write_responses(self) -> None:
        writer = self.writer
        while True:
            item = await self._pending.get()
            if item is None:
                return
            header, task, flexible = item
            try:
                response = await task
            except KafkaError as e:
                log.warning("request %d from %s failed: %s", header.api_key, self.peer, e)
                writer.close()
                return
            except Exception:
                log.exception("handler for api key %d failed; closing %s",
                              header.api_key, self.peer)
                writer.close()
                return
            if response is NO_RESPONSE:
                continue
            head = framing.response_header(header.correlation_id, flexible)
            try:
                body = response.buffers if isinstance(response, RawResponse) else [encode(response)]
            except Exception:
                log.exception("cannot encode the response to api key %d v%d; closing %s",
                              header.api_key, header.api_version, self.peer)
                writer.close()
                return
            size = len(head) + sum(len(b) for b in body)
            writer.writelines([framing.frame_size(size), head, *body])
            if writer.transport.get_write_buffer_size() > 4 * 1024 * 1024:
                await writer.drain()


def _done(value) -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


def _failed(error: Exception) -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()
    fut.set_exception(error)
    return fut
