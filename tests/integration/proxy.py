"""A loopback TCP proxy that cuts connections on purpose: after a set
number of client->broker bytes, it forwards them and then closes both
sides before the broker's answer gets back. The client has to retry a
request the broker already executed, which is what idempotence is for."""

import socket
import threading


class ChaosProxy:
    def __init__(self, target_port: int, cut_every: int):
        self.target_port = target_port
        self.cut_every = cut_every
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._running = True
        self._lock = threading.Lock()
        self._forwarded = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self._running:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:  # the broker is stopping at the end of the test
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src, dst, upstream_direction):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                if upstream_direction and self.cut_every:
                    with self._lock:
                        self._forwarded += len(data)
                        cut = self._forwarded >= self.cut_every
                        if cut:
                            self._forwarded = 0
                            self.cuts += 1
                    if cut:
                        break
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self._running = False
        self._listener.close()
