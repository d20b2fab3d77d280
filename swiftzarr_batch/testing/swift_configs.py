"""Config file text for the local Swift cluster of ``swiftzarr_batch.testing.swift_server``.

Pure functions from settings to INI text: no I/O, no processes. One replica on one device by
default, or ``object_servers`` object servers (node ``i`` serves device ``d<i>``) with a replicator
each; every server bound to 127.0.0.1, logs to files (see ``_swift_launcher``), nothing under
``/etc``. Operators' settings the tests need: Swift's own ``ratelimit`` filter
(``ratelimit_writes``) and object-updaters for listings that lag (``deferred_listings``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

#: The proxy pipeline (``cache`` is dropped without memcached, ``s3api`` goes before tempauth).
PIPELINE = (
    "catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl "
    "tempauth copy slo dlo proxy-logging proxy-server"
)
_NAME = re.compile(r"^[A-Za-z0-9.-]+$")


@dataclass(frozen=True)
class ClusterSettings:
    """Everything the config files depend on."""

    swift_dir: str  # holds swift.conf, the *-server.conf files and the rings
    devices: str  # parent of the device directory (``srv/node``)
    run_user: str  # Swift drops privileges to this user when started as root
    ports: Mapping[str, int]  # "proxy", "account", "container", "object"
    users: Mapping[str, str]  # "account:user" -> key
    admins: Collection[str]  # users in group .admin (owners of their account)
    fernet_key: str  # urlsafe-base64 of 32 random bytes
    token_life: int
    hash_prefix: str
    hash_suffix: str
    max_file_size: int | None = None
    container_listing_limit: int | None = None  # Swift's default is 10 000
    memcache_server: str | None = None  # "127.0.0.1:PORT", or None for no cache filter
    s3api: bool = False
    proxy_workers: int = 0
    keystone: Mapping[str, str] | None = None  # authtoken options: Keystone tokens too (KEY_*)
    without: Collection[str] = ()  # pipeline filters left out ("bulk", "slo"), as some sites do
    second_policy: str | None = None  # name of [storage-policy:1] (its ring: object-1.ring.gz)
    object_servers: int = 1  # nodes ``object``, ``object2``...; each its own port and device dir
    replicator_interval: float = 2.0  # seconds between object-replicator passes (object_servers>1)
    ratelimit_writes: float | None = None  # container_ratelimit_0: object writes/s per container
    ratelimit_account_factor: float = 4.0  # account_ratelimit = factor * ratelimit_writes
    ratelimit_max_sleep: float = 0.5  # max_sleep_time_seconds: beyond it the answer is 498
    deferred_listings: float | None = None  # object-updater interval; updates refused at write
    recon_dir: str = ""  # recon_cache_path of the daemons (default /var/cache/swift otherwise)


def object_port_names(count: int) -> list[str]:
    """Port / process names of the object servers: ``object``, ``object2``, ``object3``..."""
    return ["object"] + [f"object{i}" for i in range(2, count + 1)]


def node_devices(s: ClusterSettings, node: int) -> str:
    """The ``devices`` root of object node ``node`` (1-based); node 1 shares ``s.devices``."""
    return s.devices if node == 1 else f"{s.devices}{node}"


def check_user_name(user: str, key: str) -> tuple[str, str]:
    """Split ``account:user``; refuse what tempauth's ``user_<account>_<user>`` cannot express."""
    account, sep, name = user.partition(":")
    if not sep or not _NAME.match(account) or not _NAME.match(name):
        raise ValueError(
            f"user names must look like 'account:user' with letters, digits, '.' or '-': {user!r}"
        )
    if not key or any(c.isspace() for c in key):
        raise ValueError(f"the key of {user!r} must be non-empty and contain no whitespace")
    return account, name


def swift_conf(s: ClusterSettings) -> str:
    """``swift.conf``: the hash suffix, storage policies and the cluster's constraints
    (object size, listing limit ...) that the tests rely on."""
    limits = {
        "max_file_size": s.max_file_size,
        "container_listing_limit": s.container_listing_limit,
    }
    lines = "".join(f"{k} = {int(v)}\n" for k, v in limits.items() if v is not None)
    constraints = f"\n[swift-constraints]\n{lines}" if lines else ""
    return (
        "[swift-hash]\n"
        f"swift_hash_path_prefix = {s.hash_prefix}\n"
        f"swift_hash_path_suffix = {s.hash_suffix}\n"
        "\n[storage-policy:0]\nname = Policy-0\ndefault = yes\n"
        + (f"\n[storage-policy:1]\nname = {s.second_policy}\n" if s.second_policy else "")
        + f"{constraints}"
    )


def _default_section(
    s: ClusterSettings,
    server: str,
    workers: int,
    *,
    port_name: str | None = None,
    devices: str | None = None,
    swift_dir: str | None = None,
) -> str:
    return (
        "[DEFAULT]\n"
        f"bind_ip = 127.0.0.1\nbind_port = {s.ports[port_name or server]}\nworkers = {workers}\n"
        f"user = {s.run_user}\nswift_dir = {swift_dir or s.swift_dir}\n"
        f"devices = {devices or s.devices}\n"
        f"mount_check = false\nlog_name = {server}-server\nlog_level = INFO\n"
    )


def backend_server_conf(s: ClusterSettings, server: str) -> str:
    """account-, container- or object-server.conf."""
    egg = {"account": "account", "container": "container", "object": "object"}[server]
    return (
        _default_section(s, server, 0)
        + f"\n[pipeline:main]\npipeline = {server}-server\n"
        + f"\n[app:{server}-server]\nuse = egg:swift#{egg}\n"
    )


def object_server_conf(s: ClusterSettings, node: int) -> str:
    """object-server.conf of node ``node`` (1-based), with its replicator when replicated.

    The replicator syncs over ``ssync`` (the object servers' own HTTP verb), so no rsync daemon
    is needed; a stopped node's partitions are pushed to it when it is back.
    """
    name = object_port_names(s.object_servers)[node - 1]
    text = (
        _default_section(s, "object", 0, port_name=name, devices=node_devices(s, node))
        + "\n[pipeline:main]\npipeline = object-server\n"
        + "\n[app:object-server]\nuse = egg:swift#object\n"
    )
    if s.deferred_listings is not None:
        # Give up on the container update at once: it goes to async_pending (the gate in front
        # of the container server refuses it anyway; this only keeps PUTs from waiting).
        text += "container_update_timeout = 0.05\n"
    if s.object_servers > 1:
        text += (
            "\n[object-replicator]\nsync_method = ssync\nconcurrency = 2\n"
            f"interval = {s.replicator_interval}\nrecon_cache_path = {s.recon_dir}\n"
            "stats_interval = 30\n"
        )
    return text


def object_updater_conf(s: ClusterSettings, node: int, direct_swift_dir: str) -> str:
    """The object-updater of node ``node``: replays async_pendings every ``deferred_listings`` s.

    Its ``swift_dir`` holds rings whose container server is the real one, not the gate the
    proxy's ring names (which refuses the object servers' updates at write time).
    """
    name = object_port_names(s.object_servers)[node - 1]
    return _default_section(
        s,
        "object-updater",
        0,
        port_name=name,
        devices=node_devices(s, node),
        swift_dir=direct_swift_dir,
    ) + (
        f"\n[object-updater]\ninterval = {s.deferred_listings}\nconcurrency = 4\n"
        f"recon_cache_path = {s.recon_dir}\nreport_interval = 30\nslowdown = 0\n"
    )


def proxy_server_conf(s: ClusterSettings) -> str:
    """``proxy-server.conf``: the middleware pipeline (cache, s3api or filters left out as
    ``s`` says), TempAuth users and the operator settings the tests need."""
    pipeline = [name for name in PIPELINE.split() if name not in s.without]
    if s.memcache_server is None:
        pipeline.remove("cache")  # an empty memcache_servers would mean 127.0.0.1:11211
    if s.s3api:
        pipeline.insert(pipeline.index("tempauth"), "s3api")
    if s.ratelimit_writes is not None:  # after s3api, so S3 writes are limited as well
        pipeline.insert(pipeline.index("tempauth"), "ratelimit")
    if s.keystone:  # before tempauth, with its own reseller prefix (KEY_), so neither
        at = pipeline.index("tempauth")  # overrides the other's authorize hook
        pipeline[at:at] = ["authtoken", "keystoneauth"]
    user_lines = []
    for user, key in s.users.items():
        account, name = check_user_name(user, key)
        groups = " .admin" if user in s.admins else ""
        user_lines.append(f"user_{account}_{name} = {key}{groups}\n")
    filters = {
        "catch_errors": "",
        "gatekeeper": "",
        "healthcheck": "",
        "proxy-logging": "reveal_sensitive_prefix = 16\n",
        "listing_formats": "",
        "bulk": "",
        "tempurl": "allowed_digests = sha256 sha512\n",  # sha1 is deprecated (logs a warning)
        "copy": "",
        "slo": "",
        "dlo": "",
        "tempauth": (
            f"token_life = {int(s.token_life)}\n"
            f"fernet_key_1 = {s.fernet_key}\nactive_fernet_key_id = 1\n" + "".join(user_lines)
        ),
    }
    if s.keystone:
        filters["authtoken"] = "".join(f"{k} = {v}\n" for k, v in s.keystone.items()) + (
            "cache = swift.cache\n" if s.memcache_server else ""
        )
        filters["keystoneauth"] = "operator_roles = admin, member\nreseller_prefix = KEY_\n"
    eggs = {"proxy-logging": "proxy_logging"}
    if s.memcache_server is not None:
        filters["cache"] = f"memcache_servers = {s.memcache_server}\nmemcache_max_connections = 8\n"
        eggs["cache"] = "memcache"
    if s.ratelimit_writes is not None:
        filters["ratelimit"] = (
            f"container_ratelimit_0 = {s.ratelimit_writes}\n"
            f"account_ratelimit = {s.ratelimit_writes * s.ratelimit_account_factor}\n"
            f"max_sleep_time_seconds = {s.ratelimit_max_sleep}\n"
            "log_sleep_time_seconds = 0.2\nrate_buffer_seconds = 1\n"
        )
    if s.s3api:
        # Path-style buckets on 127.0.0.1; access key "account:user", secret = the user's key.
        filters["s3api"] = "location = us-east-1\ndns_compliant_bucket_names = false\n"
    text = [
        _default_section(s, "proxy", s.proxy_workers),
        f"\n[pipeline:main]\npipeline = {' '.join(pipeline)}\n",
        "\n[app:proxy-server]\nuse = egg:swift#proxy\nallow_account_management = true\n"
        "account_autocreate = true\nexpose_info = true\n"
        # Swift's ratelimit leaves a container it believes empty unlimited; its object count
        # comes from container info cached this long (default 60 s).
        + ("recheck_container_existence = 2\n" if s.ratelimit_writes is not None else "")
        # The gate in front of the container server is one more hop: on a loaded machine its
        # connects can take longer than the default 0.5 s, which the proxy answers with 503.
        + ("conn_timeout = 5\n" if s.deferred_listings is not None else ""),
    ]
    for name in dict.fromkeys(pipeline):
        if name == "proxy-server":
            continue
        use = (
            "paste.filter_factory = keystonemiddleware.auth_token:filter_factory"
            if name == "authtoken"
            else f"use = egg:swift#{eggs.get(name, name)}"
        )
        text.append(f"\n[filter:{name}]\n{use}\n{filters[name]}")
    return "".join(text)
