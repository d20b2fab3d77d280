"""On a real Slurm (``LocalSlurm``) and a real Swift: dask-jobqueue workers as Slurm jobs, the
sbatch template, scancel + resume, worker lifetimes below the walltime, no secret in Slurm.

Skipped, with the reason, where Slurm cannot run (not root, packages missing). Few and bounded
tests: a Slurm job start costs seconds on this 2-core machine.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.storage import LocalStore, MemoryStore
from zarr_reference import raw_arrays, reference_objects, swift_objects

import swiftzarr_batch
from swiftzarr_batch import SwiftStore, write_array, write_dataset
from swiftzarr_batch.jobs.clusters import (
    ClusterConfig,
    slurm_cluster,
    walltime_seconds,
    worker_lifetime,
)
from swiftzarr_batch.jobs.runner import dask_context
from swiftzarr_batch.testing.slurm import LocalSlurm, unavailable_reason
from swiftzarr_batch.testing.swift_server import LocalSwift

pytestmark = [
    pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning"),
    pytest.mark.timeout(600),
]
pytest.importorskip("dask_jobqueue", reason="dask-jobqueue not installed (extra [hpc])")

REPO = Path(swiftzarr_batch.__file__).resolve().parents[1]
TEMPLATE = REPO / "workflows" / "slurm" / "copy.sbatch"
DATA = np.arange(1024 * 1024, dtype="<i4").reshape(1024, 1024)  # 256 chunks of 64x64
AUTH = " GET /auth/v1.0 "


# -- no Slurm needed ---------------------------------------------------------------------------
def test_walltime_formats_and_lifetime_below_it():
    assert walltime_seconds("30") == 1800
    assert walltime_seconds("10:30") == 630
    assert walltime_seconds("01:00:00") == 3600
    assert walltime_seconds("1-02") == 93600
    assert walltime_seconds("1-00:00:10") == 86410
    lifetime, stagger = worker_lifetime(ClusterConfig(kind="slurm", walltime="01:00:00"))
    assert lifetime + stagger < 3600 and stagger > 0
    with pytest.raises(swiftzarr_batch.ConfigurationError):
        ClusterConfig(kind="slurm", walltime="00:01:00", lifetime_seconds=120)
    with pytest.raises(swiftzarr_batch.ConfigurationError):
        ClusterConfig(kind="slurm", walltime="1h")
    legacy = ClusterConfig.from_mapping({"workers": 3, "scheduler": ""})
    assert legacy.kind == "local" and legacy.workers == 3
    assert ClusterConfig.from_mapping({"scheduler": "tcp://h:1"}).address == "tcp://h:1"


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slurm():
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with LocalSlurm(cpus=2, memory_mb=4096) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def swift():
    with LocalSwift() as server:
        yield server


@pytest.fixture(scope="module")
def job_env(slurm):
    """What a Slurm job of this test run needs: the cluster's config and this checkout."""
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PYTHONPATH")}
    os.environ.update(slurm.env)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved["PYTHONPATH"]) if p)
    yield dict(os.environ)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def conn(swift):
    from swiftclient.client import Connection

    c = Connection(authurl=swift.auth_url, user=swift.user, key=swift.key)
    yield c
    c.close()


def make_store(server, container, prefix="", user="test:tester") -> SwiftStore:
    return SwiftStore(container, prefix, authurl=server.auth_url, user=user, key=server.users[user])


def slurm_config(slurm, **kw) -> ClusterConfig:
    values = {
        "kind": "slurm",
        "jobs": 2,
        "cores": 1,
        "memory": "1GB",
        "walltime": "00:20:00",
        "host": "127.0.0.1",
        "log_directory": str(slurm.dir / "jobs"),
        "wait_timeout_seconds": 180,
        **kw,
    }
    return ClusterConfig(**values)


def log_lines(server, fragment: str, start: int = 0) -> list[str]:
    return [line for line in server.access_log_lines()[start:] if fragment in line]


def job_ids(slurm, name: str) -> set[str]:
    out = slurm.run("scontrol", "-o", "show", "job", check=False)
    ids = set()
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("JobName") == name:
            ids.add(fields["JobId"])
    return ids


def assert_no_secrets_in_slurm(slurm, ids, secrets):
    """Neither the job records, nor the batch scripts, nor slurmctld's saved state hold them."""
    texts = []
    for job_id in ids:
        texts.append(slurm.run("scontrol", "show", "job", "-dd", job_id, check=False))
        texts.append(slurm.run("scontrol", "write", "batch_script", job_id, "-", check=False))
    for path in (slurm.dir / "state").rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("latin-1"))
    assert any("swiftzarr" in t or "dask" in t for t in texts)  # we did read the records
    for secret in secrets:
        assert secret and not any(secret in t for t in texts)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- dask-jobqueue ---------------------------------------------------------------------------
def test_slurm_cluster_two_jobs_write_byte_identical_with_one_auth(slurm, swift, job_env):
    store = make_store(swift, "slurm-arr", user="test2:tester2")  # its first auth is the job's
    dstore = make_store(swift, "slurm-ds", "ds", user="test2:tester2")
    config = slurm_config(slurm)
    start = len(swift.access_log_lines())
    os.environ["ST_KEY"] = "must-not-reach-slurm"  # a secret in the submitting environment
    try:
        with dask_context(cluster=config, stores=(store,)) as client:
            assert len(client.scheduler_info()["workers"]) == 2
            workers = job_ids(slurm, "swiftzarr-worker")
            assert len(workers) == 2
            result = write_array(
                da.from_array(DATA, chunks=(128, 128)), store, "a", chunks=(64, 64)
            )
            ds = xr.Dataset(
                {"t": (("time", "x"), np.random.default_rng(3).random((24, 40)).astype("f4"))},
                coords={"time": np.arange(24), "x": np.arange(40.0)},
            ).chunk({"time": 4})
            write_dataset(ds, dstore)
            script = slurm_cluster(config).job_script()
    finally:
        del os.environ["ST_KEY"]
    assert result.chunks == 256
    # exactly one auth request for the whole job, though 2 Slurm jobs wrote the data
    assert len(log_lines(swift, AUTH, start)) == 1  # (before our own reading connection below)
    from swiftclient.client import Connection

    conn = Connection(
        authurl=swift.auth_url, user="test2:tester2", key=swift.users["test2:tester2"]
    )
    assert swift_objects(conn, "slurm-arr") == reference_objects(DATA, "a", chunks=(64, 64))
    reference = MemoryStore()
    ds.load().to_zarr(reference, consolidated=False)
    assert raw_arrays(dstore) == raw_arrays(reference)
    xr.testing.assert_identical(xr.open_zarr(dstore, consolidated=True).load(), ds.load())
    # consolidated once: the dataset's root metadata is written once, after its last chunk
    lines = swift.access_log_lines()[start:]
    last_chunk = max(i for i, x in enumerate(lines) if "PUT /v1/AUTH_test2/slurm-ds/ds/t/c/" in x)
    root_puts = [i for i, x in enumerate(lines) if "PUT /v1/AUTH_test2/slurm-ds/ds/zarr.json" in x]
    assert len([i for i in root_puts if i > last_chunk]) == 1  # xarray's own writes come first
    # walltime-aware workers, and no secret anywhere Slurm keeps things
    assert "--lifetime" in script and "--lifetime-stagger" in script and "-t 00:20:00" in script
    token = store.session.token.token
    assert_no_secrets_in_slurm(
        slurm, workers, [swift.users["test2:tester2"], token, "must-not-reach-slurm"]
    )
    assert swift.users["test2:tester2"] not in script and token not in script


def slow_blocks(seconds: float):
    """A closure, so cloudpickle ships it by value (the workers need not import tests/)."""

    def slow(block: np.ndarray) -> np.ndarray:
        time.sleep(seconds)
        return block

    return slow


def test_worker_reaching_its_lifetime_is_replaced_and_the_job_completes(
    slurm, swift, job_env, conn
):
    """Workers live 16 +- 1 s from their start; the write needs at least 19 s of two workers'
    time (64 tasks sleeping 0.6 s), so both first-generation workers leave mid-job (together:
    no peer to hand their results to), new Slurm jobs replace them 1 s later, and the job
    completes. Finished writes are not redone: the job fetches each task's result as it
    finishes (``gather_as_done``), so the departed workers' memory held nothing still needed.
    """
    before = job_ids(slurm, "swiftzarr-worker")
    store = make_store(swift, "slurm-life")
    config = slurm_config(
        slurm, lifetime_seconds=16, lifetime_stagger_seconds=1, replace_after_seconds=1
    )
    darr = da.from_array(DATA, chunks=(128, 128)).map_blocks(slow_blocks(0.6), dtype=DATA.dtype)
    start = len(swift.access_log_lines())
    with dask_context(cluster=config, stores=(store,)):
        first = job_ids(slurm, "swiftzarr-worker") - before
        result = write_array(darr, store, "a", chunks=(64, 64))  # 64 tasks x 0.6 s, 2 threads
        used = job_ids(slurm, "swiftzarr-worker") - before
        ended = {j for j in used if slurm.job_state(j) not in ("RUNNING", "COMPLETING")}
    assert result.chunks == 256
    assert swift_objects(conn, "slurm-life") == reference_objects(DATA, "a", chunks=(64, 64))
    # replaced: both first jobs had ended, each worker by its own lifetime, before the write
    # returned, and later jobs (new job ids) finished it
    assert len(first) == 2 and first <= ended, (first, ended)
    for job in first:
        worker_log = (slurm.dir / "jobs" / f"swiftzarr-worker-{job}.err").read_text()
        assert "Reason: worker-lifetime-reached" in worker_log, worker_log[-2000:]
    assert len(used - first) >= 2, f"no worker was replaced (jobs {sorted(used)})"
    # finished work stayed done: only a task running at a departure (1 thread per worker, a
    # task = 4 chunks) may have been written twice
    chunk_puts = log_lines(swift, " PUT /v1/AUTH_test/slurm-life/a/c/", start)
    assert 256 <= len(chunk_puts) <= 256 + 4 * len(ended), (len(chunk_puts), len(ended))


# -- the sbatch template -------------------------------------------------------------------------
def test_sbatch_template_copy_cancelled_then_resumed_sends_only_the_missing(
    slurm, swift, job_env, conn, tmp_path
):
    src = tmp_path / "src.zarr"
    z = zarr.create_array(LocalStore(src), shape=(512, 512), chunks=(16, 16), dtype="<i4")
    z[:] = np.arange(512 * 512, dtype="<i4").reshape(512, 512)  # 1024 chunks
    keys = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    creds = tmp_path / "swiftrc"
    creds.write_text(
        f"export ST_AUTH={swift.auth_url}\nexport ST_USER={swift.user}\nexport ST_KEY={swift.key}\n"
    )
    creds.chmod(0o600)
    export = ",".join(
        [
            f"PYTHONPATH={job_env['PYTHONPATH']}",
            f"SWIFTZARR_PYTHON={sys.executable}",
            f"SWIFTZARR_CREDENTIALS={creds}",
            "SWIFTZARR_DASK_HOST=127.0.0.1",
            f"SWIFTZARR_RUN_DIR={tmp_path / 'run'}",
        ]
    )

    def submit(n: int) -> str:
        return slurm.run(
            "sbatch",
            "--parsable",
            f"--export={export}",
            "--time=00:15:00",
            f"--output={tmp_path}/job{n}.log",
            f"--chdir={tmp_path}",
            str(TEMPLATE),
            str(src),
            "swift://slurm-tmpl/copy",
            "--batch-size",
            "4",
            "--concurrency",
            "1",
            "--json",
            str(tmp_path / f"summary{n}.json"),
        ).strip()

    puts = " PUT /v1/AUTH_test/slurm-tmpl/copy/"
    first = submit(1)
    wait_for(
        lambda: (
            len(log_lines(swift, puts)) >= 150
            or slurm.job_state(first) not in ("PENDING", "RUNNING")
        ),
        180,
        "150 PUTs of the first job",
    )
    assert slurm.job_state(first) == "RUNNING", (tmp_path / "job1.log").read_text()
    slurm.run("scancel", first)
    assert slurm.wait_job(first, 60) == "CANCELLED"
    time.sleep(3)  # requests in flight when the job was killed land (or not) now
    present = set(swift_objects(conn, "slurm-tmpl", "copy/"))
    assert 150 <= len(present) < len(keys) and present <= keys

    mark = len(swift.access_log_lines())
    second = submit(2)
    assert slurm.wait_job(second, 300) == "COMPLETED", (tmp_path / "job2.log").read_text()
    summary = json.loads((tmp_path / "summary2.json").read_text())
    assert summary["ok"] is True
    sent = {line.split(puts, 1)[1].split()[0] for line in log_lines(swift, puts, mark)}
    assert sent == keys - present  # only the missing keys went up, each once
    assert len(log_lines(swift, puts, mark)) == len(keys - present)
    got = swift_objects(conn, "slurm-tmpl", "copy/")
    assert got == {k: (src / k).read_bytes() for k in keys}
    # the credentials were read in the job only: no key in Slurm's records
    assert_no_secrets_in_slurm(slurm, {first, second}, [swift.key])


# -- ingest through the template, and the nightly scrontab line ------------------------------
INGEST_STEPS = 6  # time steps per input file
SCRONTAB = REPO / "workflows" / "slurm" / "nightly.scrontab"
CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))  # minute hour dom month dow


def make_input(directory: Path, i: int) -> Path:
    rng = np.random.default_rng(i)
    start = np.datetime64("2024-01-01T00") + np.timedelta64(INGEST_STEPS * i, "h")
    times = start + np.arange(INGEST_STEPS) * np.timedelta64(1, "h")
    ds = xr.Dataset(
        {"temp": (("time", "lat", "lon"), rng.random((INGEST_STEPS, 4, 5)).astype("f4"))},
        coords={"time": times, "lat": np.arange(4.0), "lon": np.arange(5.0)},
    )
    path = directory / f"obs_{i:03d}.nc"
    ds.to_netcdf(path)
    return path


def expected_inputs(directory: Path, n: int) -> xr.Dataset:
    parts = [xr.open_dataset(directory / f"obs_{i:03d}.nc") for i in range(n)]
    return xr.concat(parts, dim="time", data_vars="minimal", coords="minimal").load()


def ingest_config(tmp_path: Path, container: str, *, sched: Path | None, **ingest: object) -> Path:
    """An ingest config; with ``sched``, its [dask] section is the template's scheduler file."""
    extra = "".join(f"{k} = {v}\n" for k, v in ingest.items())
    dask_section = (
        f'[dask]\nkind = "scheduler-file"\nscheduler_file = "{sched}"\nwait_for_workers = 2\n'
        if sched
        else ""
    )
    cfg = tmp_path / ("ingest-slurm.toml" if sched else "ingest-here.toml")
    cfg.write_text(
        f'[source]\ndirectory = "{tmp_path / "in"}"\npattern = "obs_*.nc"\n\n'
        f'[target]\nurl = "swift://{container}/ds.zarr"\n\n'
        f'[ingest]\nappend_dim = "time"\nchunks = {{ time = 6 }}\n{extra}\n'
        f'[output]\nsummary = "{tmp_path / "summary.json"}"\n\n{dask_section}'
    )
    return cfg


def credentials_file(swift, tmp_path: Path) -> Path:
    creds = tmp_path / "swiftrc"
    creds.write_text(
        f"export ST_AUTH={swift.auth_url}\nexport ST_USER={swift.user}\nexport ST_KEY={swift.key}\n"
    )
    creds.chmod(0o600)
    return creds


def stored_dataset(swift, container: str) -> xr.Dataset:
    store = SwiftStore(container, "ds.zarr", authurl=swift.auth_url, user=swift.user, key=swift.key)
    return xr.open_zarr(store, consolidated=True).load()


def object_exists(conn, container: str, name: str) -> bool:
    from swiftclient.exceptions import ClientException

    try:
        conn.head_object(container, name)
    except ClientException as exc:
        if exc.http_status == 404:
            return False
        raise
    return True


def record_files(conn, container: str) -> int:
    from swiftclient.exceptions import ClientException

    try:
        _, body = conn.get_object(container, "ds.zarr/.swiftzarr/ingest.json")
    except ClientException as exc:
        if exc.http_status == 404:
            return 0
        raise
    return len(json.loads(body)["files"])


def test_sbatch_template_ingest_cancelled_then_resumed_finishes_the_append(
    slurm, swift, job_env, conn, tmp_path
):
    """``copy.sbatch`` with SWIFTZARR_COMMAND=ingest: one job runs the scheduler, two srun
    workers and the ingest. ``scancel`` after a few commits; once the dead run's lock expired
    (its ``X-Delete-After``), a second job finishes: it rolls back any half-written append,
    ingests exactly the files not committed, and the dataset equals all inputs, verified."""
    (tmp_path / "in").mkdir()
    n = 16
    for i in range(n):
        make_input(tmp_path / "in", i)
    sched = tmp_path / "scheduler.json"
    cfg = ingest_config(
        tmp_path, "slurm-ingest", sched=sched, files_per_commit=1, lock_ttl_seconds=6
    )
    creds = credentials_file(swift, tmp_path)
    export = ",".join(
        [
            f"PYTHONPATH={job_env['PYTHONPATH']}",
            f"SWIFTZARR_PYTHON={sys.executable}",
            f"SWIFTZARR_CREDENTIALS={creds}",
            "SWIFTZARR_DASK_HOST=127.0.0.1",
            "SWIFTZARR_COMMAND=ingest",
            f"SWIFTZARR_SCHEDULER_FILE={sched}",
            f"SWIFTZARR_RUN_DIR={tmp_path / 'run'}",
        ]
    )

    def submit(k: int) -> str:
        return slurm.run(
            "sbatch", "--parsable", f"--export={export}", "--time=00:15:00",
            f"--output={tmp_path}/job{k}.log", f"--chdir={tmp_path}",
            str(TEMPLATE), str(cfg),
        ).strip()  # fmt: skip

    first = submit(1)
    wait_for(
        lambda: (
            record_files(conn, "slurm-ingest") >= 3
            or slurm.job_state(first) not in ("PENDING", "RUNNING")
        ),
        180,
        "3 committed files of the first job",
    )
    assert slurm.job_state(first) == "RUNNING", (tmp_path / "job1.log").read_text()
    slurm.run("scancel", first)
    assert slurm.wait_job(first, 60) == "CANCELLED"
    committed = record_files(conn, "slurm-ingest")
    assert 3 <= committed < n
    lock = "ds.zarr/.swiftzarr/locks/ingest"
    wait_for(lambda: not object_exists(conn, "slurm-ingest", lock), 30, "the lock to expire")

    second = submit(2)
    assert slurm.wait_job(second, 300) == "COMPLETED", (tmp_path / "job2.log").read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["verified"], summary
    assert summary["length_before"] == committed * INGEST_STEPS
    assert summary["files_ingested"] == [f"obs_{i:03d}.nc" for i in range(committed, n)]
    assert summary["length_after"] == n * INGEST_STEPS
    xr.testing.assert_identical(
        stored_dataset(swift, "slurm-ingest"), expected_inputs(tmp_path / "in", n)
    )
    assert_no_secrets_in_slurm(slurm, {first, second}, [swift.key])


def cron_field_ok(field: str, low: int, high: int) -> bool:
    """One cron field: ``*``, ``N``, ``A-B``, each optionally ``/STEP``, comma-separated."""
    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and not (step.isdigit() and int(step) >= 1):
            return False
        if base == "*":
            continue
        ends = base.split("-")
        if len(ends) > 2 or not all(e.isdigit() for e in ends):
            return False
        values = [int(e) for e in ends]
        if not all(low <= v <= high for v in values) or values != sorted(values):
            return False
    return True


def parse_scrontab(text: str) -> list[tuple[list[str], list[str], str]]:
    """(sbatch options, 5 cron fields, command) of each entry: ``#SCRON`` lines carry the
    options of the entry that follows them; other comments and blank lines are ignored."""
    entries, options = [], []
    for line in text.splitlines():
        if line.startswith("#SCRON"):
            options += line.removeprefix("#SCRON").split()
        elif line.strip() and not line.lstrip().startswith("#"):
            fields = line.split(None, 5)
            entries.append((options, fields[:5], fields[5]))
            options = []
    return entries


def test_cron_field_parser_rejects_what_cron_rejects():
    assert all(cron_field_ok(f, 0, 59) for f in ("*", "30", "*/15", "0-30/5", "1,2,40-45"))
    assert not any(cron_field_ok(f, 0, 59) for f in ("60", "*/0", "5-1", "a", "1-2-3", ""))


def test_nightly_scrontab_line_runs_the_ingest_as_a_batch_job(
    slurm, swift, job_env, conn, tmp_path
):
    """The scrontab entry, minus cron: Debian 12's Slurm 22.05 packages ship no ``scrontab``
    binary, so slurmctld's cron scheduling is not exercised here. What is: the entry parses
    (its 5 cron fields valid), and its command, run as scrontab runs it -- a batch script of
    that one line, submitted with the entry's ``#SCRON`` options -- with the site paths
    (/opt/swiftzarr, /etc/swiftzarr/ingest.toml, /shared/...) pointed at this checkout and
    test files. Night 1 appends the new files to the dataset; night 2, with no new input,
    changes nothing in it."""
    (entry,) = parse_scrontab(SCRONTAB.read_text())
    options, cron, command = entry
    assert all(cron_field_ok(f, lo, hi) for f, (lo, hi) in zip(cron, CRON_RANGES, strict=True))
    assert "--export=NONE" in options and any(o.startswith("--time=") for o in options)

    (tmp_path / "in").mkdir()
    for i in range(2):
        make_input(tmp_path / "in", i)
    here = ingest_config(tmp_path, "slurm-scron", sched=None)
    from swiftzarr_batch.workflows.ingest import run_from_config

    saved = {k: os.environ.get(k) for k in ("ST_AUTH", "ST_USER", "ST_KEY")}
    os.environ.update(ST_AUTH=swift.auth_url, ST_USER=swift.user, ST_KEY=swift.key)
    try:
        assert run_from_config(here) == 0  # the dataset as earlier nights left it
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    for i in range(2, 4):
        make_input(tmp_path / "in", i)  # what arrived during the day

    sched = tmp_path / "scheduler.json"
    cfg = ingest_config(tmp_path, "slurm-scron", sched=sched)
    site = {
        "/opt/swiftzarr/workflows/slurm/copy.sbatch": str(TEMPLATE),
        "/etc/swiftzarr/ingest.toml": str(cfg),
        "/shared/swiftzarr/ingest-scheduler.json": str(sched),
    }
    for path, local in site.items():
        assert path in command
        command = command.replace(path, local)
    creds = credentials_file(swift, tmp_path)
    prefix = (  # the site's install, as its environment would give it
        f"PATH=/usr/bin:/bin PYTHONPATH={job_env['PYTHONPATH']} SLURM_CONF={slurm.conf_path} "
        f"SWIFTZARR_PYTHON={sys.executable} SWIFTZARR_CREDENTIALS={creds} "
        f"SWIFTZARR_DASK_HOST=127.0.0.1 SWIFTZARR_RUN_DIR={tmp_path / 'run'} "
    )
    script = tmp_path / "scron-entry.sh"
    script.write_text(f"#!/bin/bash\n{prefix}{command}\n")

    def night(k: int) -> dict:
        job = slurm.run(
            "sbatch", "--parsable", *options, f"--output={tmp_path}/night{k}.log",
            f"--chdir={tmp_path}", str(script),
        ).strip()  # fmt: skip
        assert slurm.wait_job(job, 300) == "COMPLETED", (tmp_path / f"night{k}.log").read_text()
        return json.loads((tmp_path / "summary.json").read_text())

    first = night(1)
    assert first["status"] == "ok" and first["verified"], first
    assert first["files_ingested"] == ["obs_002.nc", "obs_003.nc"]
    assert (first["length_before"], first["length_after"]) == (12, 24)
    xr.testing.assert_identical(
        stored_dataset(swift, "slurm-scron"), expected_inputs(tmp_path / "in", 4)
    )

    def dataset_objects() -> dict[str, bytes]:
        """The dataset's objects, without the bookkeeping (lock, record) next to it."""
        _, listing = conn.get_container("slurm-scron", prefix="ds.zarr/", full_listing=True)
        names = [o["name"] for o in listing if "/.swiftzarr/" not in o["name"]]
        return {name: conn.get_object("slurm-scron", name)[1] for name in names}

    after_first = dataset_objects()
    second = night(2)
    assert second["status"] == "ok" and second["files_ingested"] == [], second
    assert second["length_after"] == 24
    assert dataset_objects() == after_first
