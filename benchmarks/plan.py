"""The workloads as a list of cases, each with its contenders, parameters and preparation.

A case is one thing measured (e.g. "W1 write 4096 x 64KiB"); an entry is one contender's way
of doing it. The runner interleaves entries within a case (A B C A B C ...), ``reps`` times.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.config import Sizes

ARRAY_CONTENDERS = (
    "raw",
    "raw-lean",
    "ours",
    "ours-helpers",
    "ours-xarray",
    "ours-nomd5",
    "zarr-swiftstore",
    "s3fs",
    "obstore",
    "swiftspec",
    "zarr-memory",
)
LIST_CONTENDERS = ("ours", "swiftclient", "obstore", "s3fs", "zarr-swiftstore", "swift-cli")
DIR_CONTENDERS = ("ours", "swiftclient", "obstore", "s3fs", "zarr-swiftstore")
DELETE_CONTENDERS = ("ours", "swift-cli", "raw")

# S3 bucket names (the s3api peers address containers as buckets) need >= 3 characters.
C_ARRAYS, C_LIST, C_COPY_SRC, C_COPY_DST, C_DELETE = (
    "bench-w1",
    "bench-w3",
    "bench-w4src",
    "bench-w4dst",
    "bench-w5",
)
C_FILES = "bench-w9"
CONTAINERS = (C_ARRAYS, C_LIST, C_COPY_SRC, C_COPY_DST, C_DELETE, C_FILES)


@dataclass
class Entry:
    label: str  # the column/row name, e.g. "swift-cli -t20"
    worker: str  # the contender process that runs it
    op: str
    params: Callable[[int], dict[str, Any]]  # rep -> parameters
    prepare: Callable[[int], None] | None = None  # before each rep, not measured
    verify: Callable[[int], str] | None = None  # after each rep, not measured: "ok" or why not
    requires: str | None = None  # label in an earlier case whose success this needs


@dataclass
class Case:
    workload: str  # W1..W5
    title: str
    reference: str  # label of the entry ratios are computed against
    entries: list[Entry] = field(default_factory=list)
    note: str = ""


class Hooks:
    """What the plan needs from the runner (seeding and counting objects on the server)."""

    def seed_list(self) -> None: ...
    def seed_copy_source(self) -> tuple[str, str, int]: ...
    def seed_delete(self, container: str, prefix: str) -> None: ...
    def count(self, container: str, prefix: str) -> int: ...
    def seed_file(self, container: str, name: str, size: int) -> None: ...


def build(
    sizes: Sizes, hooks: Hooks, only: set[str] | None = None, contenders: set[str] | None = None
) -> list[Case]:
    keep = lambda w: only is None or w in only
    cases: list[Case] = []
    last = sizes.reps - 1
    if keep("W1") or keep("W2"):
        for ac in sizes.arrays:
            case = asdict(ac)
            # the reference is the faster raw client of the case (aiohttp or the lean one)
            w1 = Case("W1", f"W1 dask write {ac.chunks} x {ac.name}", "best raw")
            w2 = Case("W2", f"W2 dask read {ac.chunks} x {ac.name}", "best raw")
            for c in ARRAY_CONTENDERS:
                w1.entries.append(
                    Entry(
                        c,
                        c,
                        "w1_write",
                        lambda rep, c=c, case=case, n=ac.name: {
                            "case": case,
                            "container": C_ARRAYS,
                            "path": f"{c}/{n}/r{rep}",
                        },
                    )
                )
                if c != "ours-helpers":  # the helpers write; reading is the same store as ours
                    w2.entries.append(
                        Entry(
                            c,
                            c,
                            "w2_read",
                            lambda rep, c=c, case=case, n=ac.name: {
                                "case": case,
                                "container": C_ARRAYS,
                                "path": f"{c}/{n}/r{last}",
                            },
                            requires=w1.title,
                        )
                    )
            cases.append(w1)
            if keep("W2"):
                cases.append(w2)
    if keep("W3"):
        n = sizes.listing_objects
        sub_digits = max(0, int(math.log10(n / 5)))  # a prefix holding 10**k <= n/5 objects
        sub_prefix = "flat/c." + "0" * (6 - sub_digits)
        seeded = {"done": False}

        def seed(rep: int) -> None:
            if not seeded["done"]:
                hooks.seed_list()
                seeded["done"] = True

        for title, cs, op, prefix, expect in (
            (f"W3 list keys, {n} objects", LIST_CONTENDERS, "w3_keys", "flat/", n),
            (f"W3 list_dir, {n} entries", DIR_CONTENDERS, "w3_dir", "flat/", n),
            (
                f"W3 list keys, {10**sub_digits} objects (memory check)",
                ("ours", "swiftclient"),
                "w3_keys",
                sub_prefix,
                10**sub_digits,
            ),
        ):
            case_ = Case("W3", title, "swiftclient" if "swiftclient" in cs else "ours")
            for c in cs:
                case_.entries.append(
                    Entry(
                        c,
                        c,
                        op,
                        lambda rep, p=prefix, e=expect: {
                            "container": C_LIST,
                            "prefix": p,
                            "expect": e,
                        },
                        prepare=seed,
                    )
                )
            cases.append(case_)
    if keep("W4"):
        src: dict[str, Any] = {}

        def prepare_src(rep: int) -> None:
            if not src:
                src["local"], src["prefix"], src["expect"] = hooks.seed_copy_source()

        def verify_dst(prefix_of: Callable[[int], str]) -> Callable[[int], str]:
            def check(rep: int) -> str:
                got = hooks.count(C_COPY_DST, prefix_of(rep))
                return "ok" if got == src["expect"] else f"FAIL: {got} of {src['expect']} copied"

            return check

        s2s = Case(
            "W4",
            f"W4 copy Swift->Swift, {sizes.copy_chunks}-chunk hierarchy",
            "raw",
            note="raw = download + upload through the client (GET then PUT per object); "
            "raw COPY = the server-side copy ceiling (one PUT with X-Copy-From per object)",
        )
        t = sizes.concurrency
        for label, worker, op, extra in (
            ("ours", "ours", "w4_swift2swift", {}),
            ("raw", "raw", "w4_swift2swift", {}),
            ("raw COPY", "raw", "w4_server_copy", {}),
            (f"swift-cli -t{t}", "swift-cli", "w4_swift2swift", {"threads": t}),
        ):
            dst = lambda rep, label=label: f"s2s/{label.replace(' ', '')}/r{rep}/"
            s2s.entries.append(
                Entry(
                    label,
                    worker,
                    op,
                    lambda rep, dst=dst, extra=extra: {
                        "src_container": C_COPY_SRC,
                        "src_prefix": src["prefix"],
                        "dst_container": C_COPY_DST,
                        "dst_prefix": dst(rep),
                        "expect": src["expect"],
                        **extra,
                    },
                    prepare=prepare_src,
                    verify=verify_dst(dst),
                )
            )
        l2s = Case(
            "W4",
            f"W4 copy local dir->Swift, {sizes.copy_chunks}-chunk hierarchy",
            "best swift-cli",
            note="reference: the best `swift upload --object-threads`",
        )
        for label, worker, extra in (
            ("ours", "ours", {}),
            *((f"swift-cli -t{n}", "swift-cli", {"threads": n}) for n in sizes.upload_threads),
        ):
            dst = lambda rep, label=label: f"l2s/{label.replace(' ', '')}/r{rep}/"
            l2s.entries.append(
                Entry(
                    label,
                    worker,
                    "w4_local2swift",
                    lambda rep, dst=dst, extra=extra: {
                        "local_dir": src["local"],
                        "dst_container": C_COPY_DST,
                        "dst_prefix": dst(rep),
                        "expect": src["expect"],
                        **extra,
                    },
                    prepare=prepare_src,
                    verify=verify_dst(dst),
                )
            )
        cases += [s2s, l2s]
    if keep("W5"):
        n = sizes.delete_objects
        case_ = Case(
            "W5",
            f"W5 delete a {n}-object prefix",
            "swift-cli",
            note="raw = one DELETE per object (after listing), same concurrency",
        )
        for c in DELETE_CONTENDERS:
            # A fresh container per contender and repetition: deleted objects leave tombstones
            # in the container database, and in one shared container each delete ran slower
            # than the one before (54 s to 73 s over nine 20 000-object deletes), which favoured
            # whoever ran earlier in a repetition.
            where = lambda rep, c=c: f"{C_DELETE}-{c}-r{rep}"
            prefix = lambda rep, c=c: f"{c}/r{rep}/"
            case_.entries.append(
                Entry(
                    c,
                    c,
                    "w5_delete",
                    lambda rep, where=where, prefix=prefix: {
                        "container": where(rep),
                        "prefix": prefix(rep),
                        "expect": n,
                    },
                    prepare=lambda rep, where=where, prefix=prefix: hooks.seed_delete(
                        where(rep), prefix(rep)
                    ),
                    verify=lambda rep, where=where, prefix=prefix: (
                        "ok"
                        if (left := hooks.count(where(rep), prefix(rep))) == 0
                        else f"FAIL: {left} objects left"
                    ),
                )
            )
        cases.append(case_)
    if keep("W9"):
        from benchmarks.plan_w9 import w9_cases

        cases += w9_cases(sizes, hooks)
    if contenders:
        for case_ in cases:
            case_.entries = [e for e in case_.entries if e.worker in contenders]
        cases = [c for c in cases if c.entries]
    return cases
