"""What every workflow shares: TOML config checking, logging, the JSON summary, exit codes.

Scheduled jobs are read by people only when something went wrong, so a config typo must fail
at once with the file and key named, and the summary must say what happened even on failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from zarr.abc.store import Store

from swiftzarr_batch.errors import ConfigurationError, SwiftZarrError
from swiftzarr_batch.store.locations import open_store
from swiftzarr_batch.store.objects import with_write_options

log = logging.getLogger("workflows")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the lock; try again later

Schema = Mapping[str, Mapping[str, tuple[type | tuple[type, ...], Any]]]
"""section -> key -> (accepted types, default); a default of REQUIRED means it must be given."""
REQUIRED = object()


def location_keys() -> dict[str, tuple[type | tuple[type, ...], Any]]:
    """The keys of a ``[source]``/``[target]`` location: its URL, the prefix of its credential
    variables, and its certificates (``swift.tls``): ``cacert`` (a CA bundle's path) or
    ``insecure = true`` (certificates not checked, logged as a warning per host). A Swift
    location written to may set ``storage_policy`` (of a container it creates) and
    ``delete_after`` (seconds until Swift deletes each object written)."""
    return {
        "url": (str, REQUIRED),
        "env_prefix": (str, ""),
        "cacert": (str, ""),
        "insecure": (bool, False),
        "storage_policy": (str, ""),
        "delete_after": (int, 0),
    }


def open_location(section: Mapping[str, Any], *, read_only: bool = False) -> Store:
    """The store of a checked ``[source]``/``[target]`` section (``location_keys``)."""
    store = open_store(
        section["url"],
        read_only=read_only,
        env_prefix=section["env_prefix"],
        insecure=section["insecure"],
        cacert=section["cacert"] or None,
    )
    if read_only:
        return store
    return with_write_options(store, section["storage_policy"], section["delete_after"])


class LockHeldError(SwiftZarrError):
    """Another run holds the dataset's lock (exit status 75)."""


def load_config(path: str | Path, schema: Schema) -> dict[str, dict[str, Any]]:
    """Read and check a TOML config: unknown sections/keys and wrong types are errors."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = set(raw) - set(schema)
    if unknown:
        raise ConfigurationError(
            f"{path}: unknown section(s) {sorted(unknown)}; expected {sorted(schema)}"
        )
    config: dict[str, dict[str, Any]] = {}
    for section, keys in schema.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise ConfigurationError(f"{path}: [{section}] must be a table")
        extra = set(given) - set(keys)
        if extra:
            raise ConfigurationError(
                f"{path}: unknown key(s) {sorted(extra)} in [{section}]; "
                f"expected some of {sorted(keys)}"
            )
        values = {}
        for key, (types, default) in keys.items():
            if key not in given:
                if default is REQUIRED:
                    raise ConfigurationError(f"{path}: [{section}] needs {key!r}")
                values[key] = default
                continue
            value = given[key]
            if not isinstance(value, types) or (
                isinstance(value, bool)
                and bool not in (types if isinstance(types, tuple) else (types,))
            ):
                names = "/".join(
                    t.__name__ for t in (types if isinstance(types, tuple) else (types,))
                )
                raise ConfigurationError(
                    f"{path}: [{section}] {key} must be {names}, got {value!r}"
                )
            values[key] = value
        config[section] = values
    return config


def setup_logging(debug: bool = False) -> None:
    """Timestamped lines on stderr (what cron mails and Slurm keeps), unless already set up."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    for name in ("swiftzarr_batch", "workflows"):
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.INFO)


def write_summary(summary: dict[str, Any], path: str | Path | None) -> None:
    """The JSON summary: to ``path`` (atomically, via a temporary file) or to stdout."""
    text = json.dumps(summary, indent=2, default=str, sort_keys=False) + "\n"
    if not path:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def run_workflow(
    name: str,
    config_path: str | Path,
    schema: Schema,
    run: Callable[[dict[str, dict[str, Any]], dict[str, Any]], None],
    summary_path: str | Path | None = None,
    *,
    debug: bool = False,
    insecure: bool = False,
    dask: Mapping[str, Any] | None = None,
) -> int:
    """Load the config, ``run(config, summary)`` (which fills in the summary), write the
    summary, return the exit code. ``insecure`` (``swiftzarr ingest --insecure``) sets
    ``insecure = true`` for every location of the config. ``dask`` (the command line's cluster
    options, ``[dask]`` keys), when not empty, replaces the config's ``[dask]`` section whole:
    a cluster named on the command line is never mixed with another one from the file.

    The summary goes to ``summary_path``, else the config's ``[output] summary``, else stdout.
    Its ``status`` is "ok" (verified), "unverified", "locked" or "failed"; an error becomes one
    log line (with the traceback when ``debug``) and an ``error`` entry.
    """
    started = time.monotonic()
    summary: dict[str, Any] = {
        "workflow": name,
        "config": str(config_path),
        "status": "failed",
        "verified": False,
    }
    code = EXIT_FAILED
    try:
        config = load_config(config_path, schema)
        for section in config.values():
            if insecure and "insecure" in section:
                section["insecure"] = True
        summary_path = summary_path or config.get("output", {}).get("summary") or None
        if dask:
            log.info(
                "cluster from the command line (%s); the config's [dask] is not used",
                ", ".join(f"{k}={v}" for k, v in dask.items()),
            )
            config["dask"] = dict(dask)
        run(config, summary)
        code = EXIT_OK if summary.get("verified") else EXIT_FAILED
        summary["status"] = "ok" if code == EXIT_OK else "unverified"
    except LockHeldError as exc:
        log.warning("%s", exc)
        summary["status"], summary["error"] = "locked", str(exc)
        code = EXIT_LOCKED
    except KeyboardInterrupt:
        summary["error"] = "interrupted"
        raise
    except Exception as exc:
        log.error("%s failed: %s", name, " ".join(str(exc).split()), exc_info=debug)
        summary["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    finally:
        summary["seconds"] = round(time.monotonic() - started, 3)
        write_summary(summary, summary_path)
    log.info("%s finished: %s (exit %d)", name, summary["status"], code)
    return code


def main_for(prog: str, run_from_config: Callable[..., int], argv: Sequence[str] | None) -> int:
    """The ``python -m swiftzarr_batch.workflows.<name>`` entry point: parse a config path and the
    common options, set up logging and return ``run_from_config``'s exit code (the
    ``swiftzarr ingest``/``mirror`` commands also take cluster options)."""
    parser = argparse.ArgumentParser(prog=prog, description=run_from_config.__doc__)
    parser.add_argument("config", help="TOML configuration file")
    parser.add_argument("--summary", help="write the JSON summary here (overrides the config)")
    parser.add_argument("--debug", action="store_true", help="debug logs and tracebacks")
    parser.add_argument(
        "--insecure", action="store_true", help="do not check TLS certificates (a warning)"
    )
    args = parser.parse_args(argv)
    setup_logging(args.debug)
    return run_from_config(
        args.config, summary_path=args.summary, debug=args.debug, insecure=args.insecure
    )
