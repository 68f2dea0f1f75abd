"""Test helpers shared by several test files: a loopback HTTP server, a Keras weights file."""

from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path


class LoopbackServer:
    """Serves ``files`` by name; ``mode`` per name: ok, truncate, drop, tamper."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.mode: dict[str, str] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):  # noqa: N802
                name = self.path.lstrip("/").split("?")[0]
                server.hits[name] = server.hits.get(name, 0) + 1
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                mode = server.mode.get(name, "ok")
                if mode == "tamper":
                    body = body[:-10] + b"0123456789"
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode in ("truncate", "drop"):
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    if mode == "drop":  # reset the connection mid-body
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                   b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def write_legacy_h5(model, path: Path) -> None:
    """Write ``model``'s weights as a legacy Keras ``.h5`` file, the format of the
    ``keras.applications`` downloads (``layer_names``, then per layer ``weight_names``)."""
    import h5py

    with h5py.File(path, "w") as f:
        layers = [layer for layer in model.layers if layer.weights]
        f.attrs["layer_names"] = [layer.name.encode() for layer in layers]
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"3"
        for layer in layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{i}_{w.name}".encode() for i, w in enumerate(layer.weights)]
            group.attrs["weight_names"] = names
            for name, w in zip(names, layer.weights):
                group.create_dataset(name.decode(), data=w.numpy())
