"""The usual alternative to relaycb, for `cargo xtask bench`.

What a team writes when it has no relaycb: Python's standard-library
ThreadingHTTPServer (HTTP/1.1 keep-alive), a handler that parses the body,
decodes the JSON-encoded `msg` inside it, and inserts one row per request
into SQLite, committed before answering {"code":0}. The database uses the
same durability as relaycb-server's store (WAL, synchronous=FULL), so that
both answer only once the callback is on disk.

Usage: python3 alternative.py --port PORT --db PATH
"""

import argparse
import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    task_id TEXT,
    callback_event TEXT,
    msg TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_task_id ON events (task_id, id);
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    args = parser.parse_args()

    db = sqlite3.connect(args.db, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.executescript(SCHEMA)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Without it, headers and body leave in two segments and the client's
        # delayed ACK stalls every answer by 40 ms: a harness artifact, not
        # the cost of the handler.
        disable_nagle_algorithm = True

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
                msg = body.get("msg")
                if isinstance(msg, str):
                    msg = json.loads(msg)
            except (ValueError, AttributeError) as error:
                self.answer(400, {"code": 400, "error": str(error)})
                return
            with lock:
                db.execute(
                    "INSERT INTO events (task_id, callback_event, msg, body) VALUES (?, ?, ?, ?)",
                    (
                        str(body.get("task_id")),
                        body.get("callback_event"),
                        json.dumps(msg),
                        raw.decode("utf-8", "replace"),
                    ),
                )
                db.commit()
            self.answer(200, {"code": 0})

        def answer(self, status, document):
            payload = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format, *args):
            pass  # one line per request would cost more than the insert

    class Server(ThreadingHTTPServer):
        # The default backlog of 5 drops connection attempts when 64 clients
        # connect at once.
        request_queue_size = 128

    server = Server(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    try:
        server.serve_forever()
    finally:
        db.close()


if __name__ == "__main__":
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main()
