"""The ingest record comes from the network: a damaged one is a clear error naming it."""

from __future__ import annotations

import pytest

from swiftzarr_batch import ConfigurationError, SwiftStore
from swiftzarr_batch.workflows.dataset_state import RECORD_KEY, read_record


@pytest.mark.parametrize(
    ("body", "says"),
    [(b"{not json", "is not JSON"), (b"[1, 2]", "not an object"), (b'{"files": 3}', "not an")],
)
def test_a_damaged_ingest_record_is_a_clear_error(
    swift_server, swift_conn, container_name, body, says
):
    store = SwiftStore(
        container_name,
        "ds",
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
    )
    swift_conn.put_container(container_name)
    swift_conn.put_object(container_name, f"ds/{RECORD_KEY}", body)  # another client wrote it
    with pytest.raises(ConfigurationError, match=says) as caught:
        read_record(store)
    assert RECORD_KEY in str(caught.value)
