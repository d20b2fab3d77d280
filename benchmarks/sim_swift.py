"""A SIMULATED Swift for W7 (scale): a loopback HTTP server whose container holds N synthetic
zarr chunk objects that exist only as arithmetic. Not a Swift; never used by tests of the
library's behaviour (those run against the real local Swift).

Why a simulation: W7 measures what a client costs when a container holds millions of objects
(time and, above all, memory). Seeding 5 M objects into the real local Swift would take hours
and its listing cost would swamp the client's. This server answers what the clients ask with
Swift's rules and next to no work of its own:

- container listings with Swift's paging rules: ``limit`` (<= ``container_listing_limit``,
  10 000; more is 412), ``marker``/``end_marker`` (exclusive/exclusive), ``prefix``,
  ``delimiter`` (``subdir`` entries, each once), ``format=json`` or plain names, names in
  UTF-8 byte order, ``X-Container-Object-Count``/``X-Container-Bytes-Used``;
- HEAD and GET of the objects (metadata documents; a chunk reads as 64 KiB of zeros, which is
  what its listed MD5 says), HEAD of the account and container, ``/info``;
- TempAuth-like ``GET /auth/v1.0`` (``X-Auth-User``/``X-Auth-Key`` -> token and storage URL);
  every other request must carry the token;
- PUT, DELETE and ``POST ?bulk-delete`` are accepted and their bodies discarded: nothing is
  stored, so a listing after a delete still shows everything.

The names are never held: the dataset is one v3 group ``ds/`` (consolidated metadata) with an
array ``ds/a`` of ``rows x 1000`` chunks of 128 x 128 int32 (64 KiB, no compression). Chunk
``k`` in sorted order is ``ds/a/c/{R[k // 1000]}/{C[k % 1000]}`` where R and C are the row and
column numbers as strings, sorted (a few thousand short strings); a marker is found by binary
search. ``python -m benchmarks.sim_swift --objects N`` prints ``PORT <n>`` when listening.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

log = logging.getLogger("benchmarks.sim_swift")

LISTING_LIMIT = 10_000
COLS = 1000
CHUNK = (128, 128)
CHUNK_BYTES = CHUNK[0] * CHUNK[1] * 4
ZERO_MD5 = hashlib.md5(bytes(CHUNK_BYTES)).hexdigest()
ACCOUNT = "AUTH_sim"
CONTAINER = "scale"
USER, KEY = "sim:tester", "simulated"
STAMP = "2026-12-03T12:00:00.000000"


class Namespace:
    """The container's sorted object names, computed on demand (see the module docstring)."""

    def __init__(self, chunks: int, prefix: str = "ds/", cols: int = COLS) -> None:
        if chunks % cols or chunks <= 0:
            raise ValueError(f"the number of chunks must be a positive multiple of {cols}")
        self.rows, self.cols = chunks // cols, cols
        self.chunks = chunks
        self.base = f"{prefix}a/c/"
        self.row_names = sorted(str(i) for i in range(self.rows))
        self.col_names = sorted(str(j) for j in range(cols))
        self.docs = {
            f"{prefix}a/zarr.json": json.dumps(self.array_doc()).encode(),
            f"{prefix}zarr.json": json.dumps(self.group_doc()).encode(),
        }
        self.extras = sorted(self.docs)
        self._head = (
            f'{{"hash": "{ZERO_MD5}", "last_modified": "{STAMP}", "bytes": {CHUNK_BYTES}, '
            f'"name": "{self.base}'
        )
        self._tails = [
            f'{c}", "content_type": "application/octet-stream"}}' for c in self.col_names
        ]

    def array_doc(self) -> dict[str, object]:
        return {
            "zarr_format": 3,
            "node_type": "array",
            "shape": [self.rows * CHUNK[0], self.cols * CHUNK[1]],
            "data_type": "int32",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(CHUNK)}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0,
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            "attributes": {},
            "dimension_names": None,
        }

    def group_doc(self) -> dict[str, object]:
        return {
            "zarr_format": 3,
            "node_type": "group",
            "attributes": {"title": "W7 simulated dataset"},
            "consolidated_metadata": {
                "kind": "inline",
                "must_understand": False,
                "metadata": {"a": self.array_doc()},
            },
        }

    @property
    def count(self) -> int:
        return self.chunks + len(self.extras)

    @property
    def bytes_used(self) -> int:
        return self.chunks * CHUNK_BYTES + sum(len(d) for d in self.docs.values())

    def chunk(self, k: int) -> str:
        return f"{self.base}{self.row_names[k // self.cols]}/{self.col_names[k % self.cols]}"

    def _chunk_lower_bound(self, name: str) -> int:
        lo, hi = 0, self.chunks
        while lo < hi:
            mid = (lo + hi) // 2
            if self.chunk(mid) < name:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def json_page(self, prefix: str, marker: str, end_marker: str, limit: int) -> bytes:
        """A listing without a delimiter, rendered straight to JSON: the names in it are one
        contiguous run of the sorted sequence, so it is sliced by index (row by row) instead of
        generated name by name (the same answer as ``render_json(self.listing(...))``)."""
        start = max(marker + "\x00" if marker else "", prefix)
        stops = [s for s in (end_marker, prefix + "\x7f" if prefix else "") if s]
        stop = min(stops) if stops else None
        k, k_stop = self._chunk_lower_bound(start), self.chunks
        if stop is not None:
            k_stop = self._chunk_lower_bound(stop)
        extras = [e for e in self.extras if e >= start and (stop is None or e < stop)]
        parts: list[str] = []
        while len(parts) < limit and (k < k_stop or extras):
            if extras and (k >= k_stop or extras[0] < self.chunk(k)):
                doc = self.docs[extras.pop(0)]
                parts.append(
                    render_json([(self._doc_name(doc), len(doc), _md5(doc))])[1:-1].decode()
                )
                continue
            row, col = divmod(k, self.cols)
            end = min(self.cols, col + limit - len(parts), col + k_stop - k)
            if extras:  # stop the run before the next document
                end = min(end, col + self._chunk_lower_bound(extras[0]) - k)
            head = f"{self._head}{self.row_names[row]}/"
            parts += [head + tail for tail in self._tails[col:end]]
            k += end - col
        return ("[" + ", ".join(parts) + "]").encode()

    def _doc_name(self, doc: bytes) -> str:
        return next(name for name, d in self.docs.items() if d is doc)

    def names_from(self, start: str) -> Iterator[str]:
        """Every name >= ``start``, in order."""
        for name, _ in self.entries_from(start):
            yield name

    def entries_from(self, start: str) -> Iterator[tuple[str, bool]]:
        """(name, is a chunk) for every name >= ``start``, in order: a merge of the chunks and
        the few documents."""
        k = self._chunk_lower_bound(start)
        extras = [e for e in self.extras if e >= start]
        rows, cols, base, n = self.row_names, self.col_names, self.base, self.cols
        while k < self.chunks or extras:
            name = f"{base}{rows[k // n]}/{cols[k % n]}" if k < self.chunks else None
            if extras and (name is None or extras[0] < name):
                yield extras.pop(0), False
            else:
                assert name is not None
                yield name, True
                k += 1

    def size_and_hash(self, name: str) -> tuple[int, str] | None:
        doc = self.docs.get(name)
        if doc is not None:
            return len(doc), hashlib.md5(doc).hexdigest()
        if not name.startswith(self.base):
            return None
        parts = name[len(self.base) :].split("/")
        if len(parts) != 2 or not all(p.isdigit() and str(int(p)) == p for p in parts):
            return None
        if int(parts[0]) >= self.rows or int(parts[1]) >= self.cols:
            return None
        return CHUNK_BYTES, ZERO_MD5

    def listing(
        self, prefix: str, marker: str, end_marker: str, delimiter: str, limit: int
    ) -> list[tuple[str, int, str] | str]:
        """Swift's container listing: names > marker, < end_marker, starting with prefix; with
        a delimiter, names with one after the prefix roll up into one ``subdir`` each. Entries
        are (name, bytes, hash) for objects and the bare string for a subdir."""
        out: list[tuple[str, int, str] | str] = []
        start = max(marker + "\x00" if marker else "", prefix)
        while len(out) < limit:
            rolled = None
            for name, is_chunk in self.entries_from(start):
                if (end_marker and name >= end_marker) or not name.startswith(prefix):
                    return out
                cut = name.find(delimiter, len(prefix)) if delimiter else -1
                if cut >= 0:
                    subdir = name[: cut + 1]
                    if not marker or subdir > marker:
                        out.append(subdir)
                    rolled = name[:cut] + chr(ord(delimiter) + 1)  # skip the rest of it
                    break
                if is_chunk:
                    out.append((name, CHUNK_BYTES, ZERO_MD5))
                else:
                    doc = self.docs[name]
                    out.append((name, len(doc), hashlib.md5(doc).hexdigest()))
                if len(out) >= limit:
                    return out
            if rolled is None:
                return out
            start = rolled
        return out


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


_ENTRY = (
    '{"hash": "%s", "last_modified": "' + STAMP + '", "bytes": %d, "name": "%s", '
    '"content_type": "application/octet-stream"}'
)


def render_json(entries: list[tuple[str, int, str] | str]) -> bytes:
    """The JSON listing body, by template: the names are generated here, plain ASCII without
    quotes or backslashes, so they need no escaping."""
    parts = [
        json.dumps({"subdir": e}) if isinstance(e, str) else _ENTRY % (e[2], e[1], e[0])
        for e in entries
    ]
    return ("[" + ", ".join(parts) + "]").encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimServer

    def log_message(self, format: str, *args: object) -> None:
        log.debug(format, *args)

    # -- plumbing --------------------------------------------------------------------------
    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        head = {"Content-Type": "text/plain; charset=utf-8", "X-Trans-Id": "tx-sim"}
        head.update(headers or {})
        for k, v in head.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _drain(self) -> bytes:
        """Read (and hash) the request body, never keeping more than one read of it."""
        md5 = hashlib.md5()
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                md5.update(self.rfile.read(size))
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                piece = self.rfile.read(min(left, 1 << 20))
                if not piece:
                    break
                md5.update(piece)
                left -= len(piece)
        return md5.hexdigest().encode()

    def _route(self) -> tuple[str, str, str, dict[str, list[str]]] | None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        parts = unquote(url.path).split("/", 4)  # "", "v1", account, container, object
        if url.path == "/info":
            self._reply(200, json.dumps(self.server.info).encode(), _JSON)
            return None
        if url.path.startswith("/auth/"):
            self._auth()
            return None
        if len(parts) < 3 or parts[1] != "v1" or parts[2] != ACCOUNT:
            self._reply(404, b"Not Found")
            return None
        if self.headers.get("X-Auth-Token") != self.server.token:
            self._reply(401, b"Unauthorized")
            return None
        container = parts[3] if len(parts) > 3 else ""
        obj = parts[4] if len(parts) > 4 else ""
        return ACCOUNT, container, obj, query

    def _auth(self) -> None:
        if (self.headers.get("X-Auth-User"), self.headers.get("X-Auth-Key")) != (USER, KEY):
            self._reply(401, b"Unauthorized")
            return
        host, port = self.server.server_address[:2]
        url = f"http://{host}:{port}/v1/{ACCOUNT}"
        self._reply(
            200,
            b"",
            {
                "X-Storage-Url": url,
                "X-Auth-Token": self.server.token,
                "X-Storage-Token": self.server.token,
                "X-Auth-Token-Expires": "86400",
            },
        )

    # -- verbs -----------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        route = self._route()
        if route is None:
            return
        _, container, obj, query = route
        ns = self.server.namespace
        if not container:
            body = json.dumps([{"name": CONTAINER, "count": ns.count, "bytes": ns.bytes_used}])
            headers = {"X-Account-Container-Count": "1", "X-Sim-Deleted": str(self.server.deleted)}
            self._reply(200, body.encode(), {**_JSON, **headers})
            return
        if container != CONTAINER:
            self._reply(404, b"Not Found")
            return
        if obj:
            self._object(obj)
            return
        self._listing(query)

    def _object(self, name: str) -> None:
        ns = self.server.namespace
        found = ns.size_and_hash(name)
        if found is None:
            self._reply(404, b"Not Found")
            return
        size, etag = found
        body = ns.docs.get(name, b"") or bytes(size)
        self._reply(
            200,
            body,
            {
                "Content-Type": "application/octet-stream",
                "Etag": etag,
                "Last-Modified": "Thu, 03 Dec 2026 12:00:00 GMT",
                "X-Timestamp": "1796299200.00000",
            },
        )

    def _listing(self, query: dict[str, list[str]]) -> None:
        ns = self.server.namespace

        def q(name: str) -> str:
            return query.get(name, [""])[0]

        limit = int(q("limit") or LISTING_LIMIT)
        if limit > LISTING_LIMIT or limit < 0:
            self._reply(412, f"Maximum limit is {LISTING_LIMIT}".encode())
            return
        entries = ns.listing(q("prefix"), q("marker"), q("end_marker"), q("delimiter"), limit)
        headers = {
            "X-Container-Object-Count": str(ns.count),
            "X-Container-Bytes-Used": str(ns.bytes_used),
            "X-Timestamp": "1796299200.00000",
            "X-Put-Timestamp": "1796299200.00000",
            "X-Storage-Policy": "Policy-0",
        }
        if self.command == "HEAD":
            self._reply(204, b"", headers)
        elif q("format") == "json" and not q("delimiter"):
            body = ns.json_page(q("prefix"), q("marker"), q("end_marker"), limit)
            self._reply(200, body, {**headers, **_JSON})
        elif q("format") == "json":
            self._reply(200, render_json(entries), {**headers, **_JSON})
        elif not entries:
            self._reply(204, b"", headers)
        else:
            text = "".join(f"{e if isinstance(e, str) else e[0]}\n" for e in entries)
            self._reply(200, text.encode(), headers)

    def do_PUT(self) -> None:
        route = self._route()
        if route is None:
            return
        etag = self._drain()
        obj = route[2]
        self._reply(201, b"", {"Etag": etag.decode()} if obj else {})

    def do_DELETE(self) -> None:
        route = self._route()
        if route is None:
            return
        self._reply(204)

    def do_POST(self) -> None:
        route = self._route()
        if route is None:
            return
        _, container, _, query = route
        if "bulk-delete" not in query or container:
            self._drain()
            self._reply(204)
            return
        names = _read_lines(self)
        with self.server.lock:
            self.server.deleted += len(names)
        result = {
            "Number Deleted": len(names),
            "Number Not Found": 0,
            "Response Status": "200 OK",
            "Response Body": "",
            "Errors": [],
        }
        self._reply(200, json.dumps(result).encode(), _JSON)


_JSON = {"Content-Type": "application/json; charset=utf-8"}


def _read_lines(handler: Handler) -> list[str]:
    length = int(handler.headers.get("Content-Length") or 0)
    text = handler.rfile.read(length).decode()
    return [unquote(line) for line in text.splitlines() if line.strip()]


class SimServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, chunks: int, port: int = 0, cols: int = COLS) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.namespace = Namespace(chunks, cols=cols)
        self.token = "AUTH_tk" + secrets.token_hex(16)
        self.lock = threading.Lock()
        self.deleted = 0
        self.info = {
            "swift": {
                "version": "simulated",
                "container_listing_limit": LISTING_LIMIT,
                "max_file_size": 5 * 2**30,
                "max_object_name_length": 1024,
            },
            "bulk_delete": {"max_deletes_per_request": 10000, "max_failed_deletes": 1000},
            "slo": {"max_manifest_segments": 1000, "min_segment_size": 1},
            "tempauth": {"account_acls": True},
        }

    @property
    def auth_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/auth/v1.0"


def object_url(server: SimServer, name: str) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/v1/{ACCOUNT}/{CONTAINER}/{quote(name)}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sim_swift", description=__doc__)
    p.add_argument("--objects", type=int, required=True, help="chunk objects (multiple of 1000)")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    server = SimServer(args.objects, args.port)
    print(f"PORT {server.server_address[1]}", flush=True)
    started = time.monotonic()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        log.info("served %.0f s", time.monotonic() - started)
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
