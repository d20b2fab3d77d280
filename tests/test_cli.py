"""The ``swiftzarr`` command, end to end in subprocesses, against the real Swift server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from swiftzarr_batch import SwiftStore

SWIFTZARR = str(Path(sys.executable).parent / "swiftzarr")
CLEARED = ("ST_AUTH", "ST_USER", "ST_KEY", "OS_STORAGE_URL", "OS_AUTH_TOKEN")


def run(args, env, *, stdin: str = "", timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SWIFTZARR, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def env(swift_server) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return {**base, **swift_server.env}


@pytest.fixture
def dataset(swift_server, container_name) -> str:
    store = SwiftStore(
        container_name,
        "ds",
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
    )
    root = zarr.group(store)
    a = root.create_array("a", shape=(20, 20), chunks=(5, 5), dtype="f4")
    a[:] = np.arange(400, dtype="f4").reshape(20, 20)
    root.create_group("g").create_array("b", shape=(6,), chunks=(3,), dtype="i8")[:] = 5
    zarr.consolidate_metadata(store)
    return f"swift://{container_name}/ds"


def test_token_exports_a_token_that_works_alone(env, dataset, swift_server):
    out = run(["token", "--lifetime", str(30 * 86400)], env)
    assert out.returncode == 0, out.stderr
    exports = dict(re.findall(r"^export (\w+)=(\S+)", out.stdout, re.M))
    assert exports["OS_STORAGE_URL"] == swift_server.storage_url()
    assert exports["OS_AUTH_TOKEN"].startswith("AUTH_")
    seconds = int(re.search(r"# in (\d+) s", out.stdout).group(1))
    # what the server granted (TempAuth: its token_life), and a warning that it is less
    assert swift_server.token_life - 300 < seconds <= swift_server.token_life
    assert "the server granted" in out.stderr
    assert exports["OS_AUTH_TOKEN"] not in out.stderr
    token_only = {k: v for k, v in env.items() if not k.startswith("ST_")}
    token_only.update(
        OS_STORAGE_URL=exports["OS_STORAGE_URL"], OS_AUTH_TOKEN=exports["OS_AUTH_TOKEN"]
    )
    listed = run(["ls", dataset], token_only)
    assert listed.returncode == 0 and listed.stdout.split() == ["a/", "g/", "zarr.json"]
    assert exports["OS_AUTH_TOKEN"] not in listed.stderr
    refused = run(["token"], token_only)  # a token alone cannot make another
    assert refused.returncode == 1 and "needs credentials" in refused.stderr


def test_ls_du_tree(env, dataset, container_name):
    containers = run(["ls", "-l", "swift://"], env)
    assert containers.returncode == 0 and f"{container_name}/" in containers.stdout
    long = run(["ls", "-l", dataset], env)
    assert re.search(r"^\s+-\s+a/$", long.stdout, re.M)
    assert re.search(r"^\s+[\d.]+ KB\s+zarr.json$", long.stdout, re.M)
    du = run(["du", "--bytes", dataset], env)
    rows = {line.split()[-1]: line.split() for line in du.stdout.splitlines()}
    assert int(rows["a/"][1]) == 17 and int(rows["g/"][1]) == 4  # chunks + zarr.json
    assert int(rows["a/"][0]) + int(rows["g/"][0]) + int(rows["zarr.json"][0]) == int(
        du.stdout.splitlines()[-1].split()[0]
    )
    tree = run(["tree", dataset], env)
    assert tree.returncode == 0
    assert tree.stdout.splitlines() == [
        "/ (group, zarr v3)",
        "  a (20, 20) float32 chunks=(5, 5)",
        "  g (group)",
        "    b (6,) int64 chunks=(3,)",
    ]


def test_copy_verify_consolidate_end_to_end(env, dataset, tmp_path):
    local = tmp_path / "copy.zarr"
    summary_file = tmp_path / "summary.json"
    out = run(["copy", dataset, str(local), "--json", str(summary_file)], env)
    assert out.returncode == 0, out.stderr
    summary = json.loads(summary_file.read_text())
    assert summary["ok"] and summary["verified"] and summary["keys_copied"] == 22
    assert "copied 22/22 keys" in out.stdout and "copy chunks: 18/18" in out.stderr  # progress
    again = run(["copy", dataset, str(local)], env)
    assert "skipped 22 matching" in again.stdout
    np.testing.assert_array_equal(
        zarr.open_array(local, path="a", mode="r")[:], np.arange(400, dtype="f4").reshape(20, 20)
    )

    assert run(["verify", str(local)], env).returncode == 0
    (local / "a" / "c" / "3" / "1").unlink()
    bad = run(["verify", str(local), "--json", "-"], env)
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["missing_chunks"] == 1 and report["ok"] is False
    assert run(["verify", str(local), "--allow-missing"], env).returncode == 0

    back = f"{dataset}-back"
    assert run(["copy", str(local), back, "--dry-run"], env).returncode == 0
    assert run(["ls", back], env).stdout == ""  # the dry run wrote nothing
    assert run(["copy", str(local), back], env).returncode == 0
    consolidated = run(["consolidate", back], env)
    assert consolidated.returncode == 0 and "3 nodes" in consolidated.stdout
    verified = run(["verify", back, "--allow-missing"], env)
    assert verified.returncode == 0 and "content of 21 objects checked" in verified.stdout


def test_copy_between_two_clusters_with_env_prefixes(env, dataset):
    from swiftzarr_batch.testing.swift_server import LocalSwift

    with LocalSwift() as other:
        both = {**env, **{f"DST_{k}": v for k, v in other.env.items()}}
        out = run(["copy", dataset, "swift://mirror/ds", "--dst-env", "DST_", "--json", "-"], both)
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        assert summary["verified"] and summary["keys_copied"] == 22
        assert summary["keys_server_side"] == 0  # another cluster: through this machine
        there = run(["tree", "swift://mirror/ds"], {**env, **other.env})
        assert there.returncode == 0 and "b (6,) int64 chunks=(3,)" in there.stdout
        assert run(["ls", "swift://mirror/ds"], env).stdout == ""  # not on the first cluster


def test_rm_asks_for_confirmation_unless_yes(env, dataset):
    declined = run(["rm", dataset], env, stdin="n\n")
    assert declined.returncode == 1 and "nothing was deleted" in declined.stderr
    assert "delete 22 objects" in declined.stderr
    assert run(["ls", dataset], env).stdout.split() == ["a/", "g/", "zarr.json"]
    assert run(["rm", dataset], env, stdin="").returncode == 1  # no answer is no
    confirmed = run(["rm", dataset], env, stdin="y\n")
    assert confirmed.returncode == 0 and "deleted 22 objects" in confirmed.stdout
    assert run(["ls", dataset], env).stdout == ""
    assert run(["rm", "--yes", dataset], env).stdout.startswith("nothing to delete")


def test_errors_are_one_clear_line(env, dataset, tmp_path):
    no_creds = {k: v for k, v in env.items() if not k.startswith("ST_")}
    cases = [
        (["ls", dataset], no_creds, "no Swift credentials found"),
        (["copy", str(tmp_path / "missing"), dataset], env, "no such directory"),
        (["tree", f"{dataset}-nothing"], env, "no zarr group or array at swift://"),
        (["verify", f"{dataset}-nothing"], env, "not a zarr hierarchy"),
        (["copy", dataset, dataset + "/inner"], env, "overlap"),
        (["ls", "swift://bad/..//x"], env, "'.' or '..' segment"),
    ]
    for args, use_env, message in cases:
        out = run(args, use_env)
        assert out.returncode == 1, (args, out.stderr)
        assert message in out.stderr + out.stdout, (args, out.stderr)
        assert "Traceback" not in out.stderr
        if args[0] != "verify":  # verify prints its report on stdout; errors are one line
            assert len(out.stderr.strip().splitlines()) == 1, out.stderr
            assert out.stderr.startswith(f"swiftzarr {args[0]}: error: ")
    wrong_key = {**env, "ST_KEY": "wrong-key-123"}
    out = run(["ls", dataset], wrong_key)
    assert out.returncode == 1 and "refused" in out.stderr and "wrong-key-123" not in out.stderr
    usage = run(["copy", dataset, "x", "--if-exists", "replace"], env)
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
    debug = run(["--debug", "tree", f"{dataset}-nothing"], env)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_serve_is_still_wired(env):
    out = run(["serve", "--help"], env)
    assert out.returncode == 0 and "--data-dir" in out.stdout
