"""W7's simulated Swift (benchmarks/sim_swift.py) pages its listings as the real Swift does.

The same names are put into the real local Swift; both are asked the same listing queries
(limit, marker, end_marker, prefix, delimiter, JSON and plain) and must answer the same names,
subdirs, status and object count. A benchmark whose server paged differently would measure a
different client.
"""

from __future__ import annotations

import threading

import pytest
import requests

from benchmarks.sim_swift import CONTAINER, KEY, USER, SimServer

QUERIES = [
    {},
    {"limit": "7"},
    {"limit": "7", "marker": "ds/a/c/1/2"},
    {"limit": "5", "marker": "ds/a/c/10/0"},
    {"marker": "ds/a/c/9/2"},
    {"marker": "ds/a/c/2", "end_marker": "ds/a/c/3/1"},
    {"prefix": "ds/a/c/1"},
    {"prefix": "ds/a/c/1/"},
    {"prefix": "ds/", "delimiter": "/"},
    {"prefix": "ds/a/", "delimiter": "/"},
    {"prefix": "ds/a/c/", "delimiter": "/", "limit": "4"},
    {"prefix": "ds/a/c/", "delimiter": "/", "marker": "ds/a/c/11/"},
    {"delimiter": "/"},
    {"marker": "zzz"},
    {"prefix": "nothing/"},
]


@pytest.fixture
def sim():
    server = SimServer(36, cols=3)  # rows 0..11: "10" and "11" sort before "2"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def _get(url: str, token: str, params: dict[str, str]) -> tuple[int, list[str], str | None]:
    resp = requests.get(url, headers={"X-Auth-Token": token}, params=params, timeout=30)
    count = resp.headers.get("X-Container-Object-Count")
    if params.get("format") == "json" and resp.status_code == 200:
        names = [e.get("name") or e.get("subdir") for e in resp.json()]
    else:
        names = resp.text.splitlines()
    return resp.status_code, names, count


def test_sim_listings_page_like_the_real_swift(sim, swift_server, swift_conn):
    names = list(sim.namespace.names_from(""))
    assert len(names) == 38 and names[0] == "ds/a/c/0/0" and "ds/a/c/10/2" < "ds/a/c/2/0"
    assert names == sorted(names, key=lambda n: n.encode())
    swift_conn.put_container(CONTAINER)
    for name in names:
        swift_conn.put_object(CONTAINER, name, b"")
    real_url, real_token = swift_conn.get_auth()
    auth = requests.get(sim.auth_url, headers={"X-Auth-User": USER, "X-Auth-Key": KEY}, timeout=9)
    sim_url, sim_token = auth.headers["X-Storage-Url"], auth.headers["X-Auth-Token"]
    for query in QUERIES:
        for fmt in ({"format": "json"}, {}):
            params = {**query, **fmt}
            real = _get(f"{real_url}/{CONTAINER}", real_token, params)
            simulated = _get(f"{sim_url}/{CONTAINER}", sim_token, params)
            assert simulated == real, params
    over = requests.get(
        f"{sim_url}/{CONTAINER}", headers={"X-Auth-Token": sim_token}, params={"limit": "10001"}
    )
    assert over.status_code == 412
    assert requests.get(f"{sim_url}/{CONTAINER}", timeout=9).status_code == 401
