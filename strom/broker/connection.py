"""One client connection: frames in, handlers, responses out in order.

An asyncio Protocol rather than streams: `data_received` cuts whole frames
out of the input buffer and calls each handler right away (appends happen
in arrival order, before the handler returns). A handler that must wait
returns a coroutine, run as a task, so a producer may pipeline many
requests while earlier ones wait for their fsync. Responses leave strictly
in request order: whatever is ready at the head of the queue is written
as soon as it is ready, with no task or extra loop turn per request.
Produce with acks=0 gets no response.

Flow control and memory: a connection holds at most
- `_MAX_IN_FLIGHT` requests awaiting their response;
- the request bytes the broker-wide `queued.max.request.bytes` budget
  grants it (broker/budget.py): a frame's size is taken from the budget
  when its length is read, before its body arrives, and given back when
  it is answered; a frame that does not fit waits, with reading paused;
  one connection holds at most a quarter of the budget, so a client
  whose requests park (JoinGroup, acks=all) cannot take it all;
- one transport write buffer's worth of responses: no request is
  dispatched while the write buffer is over its high mark (the client is
  not reading), and a Fetch, whose response may be tens of MB, is
  dispatched only once every response before it has been written.
Whenever dispatch stops, reading pauses, so the input buffer holds at
most the frame being read. A client that reads none of its buffered
responses for `connections.max.unread.ms` is disconnected.

Limits: a frame larger than `socket.request.max.bytes` is refused from its
4-byte length before its body is read; a frame that does not parse, an
unknown API key or an unsupported version (other than ApiVersions, which
answers) closes this connection only, after the requests read before it
are answered. Idle connections are closed after `connections.max.idle.ms`.
"""

import asyncio
import logging
import struct
from collections import deque

from strom.broker import router
from strom.broker.context import NO_RESPONSE, RawResponse, RequestContext
from strom.broker.handlers.api_versions import unsupported_version_response
from strom.logsafe import LogLimiter, printable
from strom.protocol import framing
from strom.protocol.errors import KafkaError
from strom.protocol.framing import MalformedFrameError
from strom.protocol.schemas import encode, read_request

log = logging.getLogger(__name__)
# Refused frames and failed requests are logged once each, but no more
# than a few a second in all: a hostile client must not fill the disk.
_refusals = LogLimiter(log)

_SIZE = struct.Struct(">i")
_API_KEY = struct.Struct(">h")
_MAX_IN_FLIGHT = 256
_FETCH = 1


class Connection(asyncio.Protocol):
    def __init__(self, broker):
        self.broker = broker
        self.loop = broker.loop
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.closed = self.loop.create_future()  # set by connection_lost
        self._buf = bytearray()
        # (header, flexible, response or future, request bytes held) per
        # request, in order
        self._pending: deque = deque()
        self._closing = False  # no more requests: answer what was read, then close
        self._read_paused = False
        self._write_paused = False
        self._last_activity = self.loop.time()
        self._idle_s = broker.config.connections_max_idle_ms / 1000
        self._idle_timer = None
        self._budget = broker.request_budget
        self._reserved = 0  # taken from the budget for the frame being read
        self._held = 0  # taken for the requests in _pending
        self._stalled = False  # a whole frame (or its budget) waits: don't read more
        self._waiting_budget = False
        self._unread_timer = None
        self._unread_s = broker.config.connections_max_unread_ms / 1000

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.broker.connections.add(self)
        self._idle_timer = self.loop.call_later(self._idle_s, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._last_activity = self.loop.time()
        self._buf += data
        self._process()

    def _process(self) -> None:
        """Dispatch the whole frames in the buffer while the limits allow
        (the rest waits there, and reading pauses), then write what is
        ready."""
        while self._cut_frames():
            before = len(self._pending)
            self._write_ready()  # what is answered already may make room
            if len(self._pending) == before or self._closing or self.transport.is_closing():
                return  # the rest waits for a response (_on_done)
        self._write_ready()

    def _cut_frames(self) -> bool:
        """Dispatch what the limits allow; True when the next frame waits
        for requests before it to be answered."""
        buf = self._buf
        pos, end = 0, len(buf)
        max_size = self.broker.config.socket_request_max_bytes
        pending = self._pending
        stalled = waits_for_answers = False
        view = memoryview(buf)  # released before the buffer is trimmed
        try:
            while end - pos >= 4 and not self._closing:
                if len(pending) >= _MAX_IN_FLIGHT or self._write_paused:
                    stalled = True
                    break
                size = _SIZE.unpack_from(buf, pos)[0]
                if not self._reserved:
                    if size < 0 or size > max_size:
                        raise MalformedFrameError(f"request size {size} is outside "
                                                  f"0..{max_size} (socket.request.max.bytes)")
                    if self._held and self._held + size + 4 > self._budget.limit // 4:
                        # one connection holds at most a quarter of the budget
                        stalled = waits_for_answers = True
                        break
                    if not self._budget.try_take(size + 4):
                        stalled = True
                        if not self._waiting_budget:
                            self._waiting_budget = True
                            self._budget.wait(self._budget_given)
                        break
                    self._reserved = size + 4
                if end - pos - 4 < size:
                    break  # keep reading: its bytes are reserved
                if size >= 2 and _API_KEY.unpack_from(buf, pos + 4)[0] == _FETCH and pending:
                    stalled = waits_for_answers = True  # its response may be large:
                    break                                # first write those before it
                frame = view[pos + 4 : pos + 4 + size].tobytes()
                pos += 4 + size
                self._dispatch(frame)  # _pending holds the reservation now
                self._held += self._reserved
                self._reserved = 0
        except MalformedFrameError as e:
            _refusals.log(logging.WARNING, "closing connection from %s: %s", self.peer, printable(e))
            self.shutdown()
            pos = end
            self._release_reserved()
        finally:
            view.release()
        del buf[:pos]
        self._stalled = stalled
        return waits_for_answers

    def _budget_given(self) -> None:
        self.loop.call_soon(self._retry_budget)  # not inside another connection's write

    def _retry_budget(self) -> None:
        self._waiting_budget = False
        if self._buf and not self._closing and not self.transport.is_closing():
            self._process()

    def _release_reserved(self) -> None:
        if self._reserved:
            self._budget.give(self._reserved)
            self._reserved = 0

    def connection_lost(self, exc) -> None:
        self._closing = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._unread_timer is not None:
            self._unread_timer.cancel()
        self._buf = bytearray()
        # Nobody is left to answer: stop the long polls and fsync waits.
        for _, _, item, _ in self._pending:
            if not isinstance(item, asyncio.Future):
                continue
            if not item.done():
                item.cancel()
            elif not item.cancelled():
                item.exception()  # mark it retrieved: nobody will report it now
        self._pending.clear()
        held, self._held = self._held, 0
        if held:
            self._budget.give(held)
        self._release_reserved()
        self.broker.connections.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()
        if self._unread_timer is None:
            self._unread_timer = self.loop.call_later(
                self._unread_s, self._check_unread, self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._unread_timer is not None:
            self._unread_timer.cancel()
            self._unread_timer = None
        if self._buf and not self._closing:
            self._process()  # frames that waited for the client to read
        else:
            self._update_reading()

    def _check_unread(self, buffered_then: int) -> None:
        """The client has read nothing of its buffered responses since the
        write buffer filled: drop them and the connection."""
        buffered = self.transport.get_write_buffer_size()
        if buffered < buffered_then:  # it reads, slowly: look again later
            self._unread_timer = self.loop.call_later(self._unread_s, self._check_unread, buffered)
            return
        self._unread_timer = None
        log.warning("closing connection from %s: it read none of %d buffered response bytes "
                    "in %.0f s (connections.max.unread.ms)", self.peer, buffered, self._unread_s)
        self._closing = True
        self.transport.abort()

    # -- requests ------------------------------------------------------------------

    def _dispatch(self, frame: bytes) -> None:
        header = framing.parse_request_header(frame, router.is_flexible)
        if header.api_key == framing.API_VERSIONS and not router.supports(
            header.api_key, header.api_version
        ):
            # Answer in the v0 layout, which every client can read, with the
            # versions we do support; the client retries with one.
            self._pending.append((header, False, RawResponse([unsupported_version_response()]),
                                  self._reserved))
            return
        if not router.supports(header.api_key, header.api_version):
            raise MalformedFrameError(
                f"unsupported api key {header.api_key} version {header.api_version} "
                f"(client {header.client_id!r})"
            )
        try:
            request, _ = read_request(header.api_key, header.api_version, frame, header.body_offset)
        except Exception as e:
            raise MalformedFrameError(
                f"cannot decode api key {header.api_key} v{header.api_version}: {e}"
            ) from None
        # ApiVersions answers with a v0 response header whatever its version.
        flexible = header.flexible and header.api_key != framing.API_VERSIONS
        ctx = RequestContext(self.broker, header, self.peer)
        try:
            result = router.HANDLERS[header.api_key].handler(ctx, request)
        except Exception as e:  # reported in request order by _write_ready
            result = self.loop.create_future()
            result.set_exception(e)
        else:
            if asyncio.iscoroutine(result):
                result = self.loop.create_task(result)
                result.add_done_callback(self._on_done)
        self._pending.append((header, flexible, result, self._reserved))

    def _on_done(self, _task) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self._buf and not self._closing:
            self._process()  # frames that waited for room in flight; writes what is ready
        else:
            self._write_ready()

    def _write_ready(self) -> None:
        """Write every response at the head of the queue that is ready."""
        pending = self._pending
        out = []
        done = 0  # request bytes answered: given back to the budget
        while pending:
            header, flexible, item, size = pending[0]
            if isinstance(item, asyncio.Future):
                if not item.done():
                    break
                if item.cancelled():
                    pending.popleft()
                    done += size
                    continue
                error = item.exception()
                if error is not None:
                    pending.popleft()
                    self._give(done + size)
                    self._fail(header, error, out)
                    return
                item = item.result()
            pending.popleft()
            done += size
            if item is NO_RESPONSE:
                continue
            head = framing.response_header(header.correlation_id, flexible)
            try:
                body = item.buffers if isinstance(item, RawResponse) else [encode(item)]
            except Exception:
                log.exception("cannot encode the response to api key %d v%d; closing %s",
                              header.api_key, header.api_version, self.peer)
                self._give(done)
                self._abort(out)
                return
            out += (framing.frame_size(len(head) + sum(len(b) for b in body)), head, *body)
        if done:
            self._give(done)
        if out:
            self.transport.writelines(out)
        if self._closing and not pending:
            self.transport.close()
        else:
            self._update_reading()

    def _fail(self, header, error: BaseException, out: list) -> None:
        if isinstance(error, KafkaError):
            _refusals.log(logging.WARNING, "request %d from %s failed: %s", header.api_key,
                          self.peer, printable(error))
        else:
            log.error("handler for api key %d failed; closing %s", header.api_key, self.peer,
                      exc_info=error)
        self._abort(out)

    def _abort(self, out: list) -> None:
        """Send what was ready before the failed request, then close."""
        if out:
            self.transport.writelines(out)
        self._closing = True
        self.transport.close()

    def _give(self, n: int) -> None:
        self._held -= n
        self._budget.give(n)

    def _update_reading(self) -> None:
        pause = self._write_paused or self._stalled or len(self._pending) >= _MAX_IN_FLIGHT
        if pause != self._read_paused and not self.transport.is_closing():
            self._read_paused = pause
            (self.transport.pause_reading if pause else self.transport.resume_reading)()

    # -- lifecycle -------------------------------------------------------------------

    def shutdown(self) -> None:
        """Read no more requests; close once those already read are answered."""
        if self._closing:
            return
        self._closing = True
        if not self._pending and self.transport is not None:
            self.transport.close()

    def _check_idle(self) -> None:
        idle = self.loop.time() - self._last_activity
        if idle >= self._idle_s and not self._pending:
            log.info("closing idle connection from %s", self.peer)
            self.shutdown()
        else:
            self._idle_timer = self.loop.call_later(max(self._idle_s - idle, 0.01), self._check_idle)
