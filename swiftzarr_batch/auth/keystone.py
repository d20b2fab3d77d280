"""Keystone v3 authentication: password or application credential -> Swift storage URL + token.

Why no keystoneauth1: one POST to ``/v3/auth/tokens`` and a look into the returned catalog is
all a Swift client needs, and plain ``requests`` keeps the dependency tree (and what can leak
secrets into logs) small. The token is the ``X-Subject-Token`` header; its expiry is the body's
``token.expires_at``; the storage URL is the ``object-store`` endpoint of the wanted interface
(``public`` by default) and, if given, region.

Credentials come from arguments, from ``OS_*`` environment variables (what an OpenStack RC file
exports), or from ``clouds.yaml`` via ``OS_CLOUD`` (``from_env``). Providers never show their
secret in a ``repr`` and refuse to be pickled unless built with ``travels=True``
(``providers.SecretProvider``, shared with v1 auth).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict, Unpack

from swiftzarr_batch.auth.providers import (
    SecretProvider,
    auth_request,
    secret_digest,
    warn_unverified,
)
from swiftzarr_batch.errors import AuthenticationError, ConfigurationError
from swiftzarr_batch.swift.proxy import ProxyOption, proxy_choice
from swiftzarr_batch.swift.status import Outcome, classify
from swiftzarr_batch.swift.tls import Trust, resolve_trust
from swiftzarr_batch.swift.tokens import Token

__all__ = [
    "KeystoneApplicationCredential",
    "KeystoneOptions",
    "KeystonePassword",
    "KeystoneProvider",
    "from_env",
    "load_cloud",
]

log = logging.getLogger(__name__)


def _tokens_url(auth_url: str) -> str:
    base = auth_url.rstrip("/")
    return f"{base}/auth/tokens" if base.endswith("/v3") else f"{base}/v3/auth/tokens"


def _expiry(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        log.warning("could not parse Keystone token expiry %r; treating it as unknown", text)
        return None


class KeystoneOptions(TypedDict, total=False):
    """Where and how to reach Keystone, the same for every credential kind.

    region: the object-store endpoint's region (None: the first one offered).
    interface: the endpoint's interface, ``public`` by default (``internal``, ``admin``).
    verify_tls: check Keystone's certificate. cacert: the CA bundle to check it with.
    trust: a ``swift.tls.Trust`` resolved already (wins over both; ``load_cloud`` gives one).
    timeout: seconds per auth request.
    travels: allow the provider, secret included, to be pickled to dask workers.
    proxy: a forward proxy URL, False for none (``swift.proxy``; None: HTTPS_PROXY...).
    """

    region: str | None
    interface: str
    verify_tls: bool
    cacert: str | os.PathLike[str] | None
    trust: Trust | None
    timeout: float
    travels: bool
    proxy: ProxyOption


class _KeystoneV3(SecretProvider):
    """Shared by both credential kinds: the POST, the catalog, errors, the cache key."""

    def __init__(
        self,
        auth_url: str,
        secret: str,
        *,
        region: str | None = None,
        interface: str = "public",
        verify_tls: bool = True,
        cacert: str | os.PathLike[str] | None = None,
        trust: Trust | None = None,
        timeout: float = 30.0,
        travels: bool = False,
        proxy: ProxyOption = None,
    ) -> None:
        if not auth_url:
            raise ConfigurationError("Keystone auth_url is empty")
        self.auth_url = auth_url
        self._secret = secret  # the password or the credential's secret: never shown
        self.region = region or None
        self.interface = interface or "public"
        #: whose certificates are trusted (``swift.tls``), for Keystone and the storage URL
        self.trust = trust or resolve_trust(cacert, verify_tls=verify_tls)
        self.verify_tls = self.trust.verify
        self.timeout = timeout
        self.travels = travels
        self.proxy = proxy_choice(proxy)
        warn_unverified(self.trust, "Keystone", auth_url)

    # -- what subclasses say ------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        raise NotImplementedError

    def _scope(self) -> dict[str, Any] | None:
        return None

    def _who(self) -> str:
        raise NotImplementedError

    # -- identity -------------------------------------------------------------------------------
    def cache_key(self) -> tuple[str, ...]:
        return (
            self.auth_url,
            type(self).__name__,
            self._who(),
            self.interface,
            self.region or "",
            secret_digest(self._secret),
        )

    # -- authentication -----------------------------------------------------------------------
    def authenticate_once(self) -> Token:
        """POST /v3/auth/tokens (``authenticate`` retries it) and pick the endpoint."""
        body: dict[str, Any] = {"auth": {"identity": self._identity()}}
        scope = self._scope()
        if scope:
            body["auth"]["scope"] = scope
        url = _tokens_url(self.auth_url)
        resp = auth_request(
            "POST",
            url,
            what=f"Keystone at {self.auth_url}",
            trust=self.trust,
            timeout=self.timeout,
            proxy=self.proxy,
            json_body=body,
            headers={"Accept": "application/json"},
        )
        outcome = classify(resp.status)
        if outcome is not Outcome.OK:
            raise AuthenticationError(
                f"Keystone at {self.auth_url} refused {self._who()} ({resp.status} "
                f"{resp.reason}); check the credentials, project and domains"
            )
        token = resp.headers.get("X-Subject-Token")
        try:
            data = json.loads(resp.body)["token"]
        except (ValueError, KeyError, TypeError):
            data = None
        if not token or not isinstance(data, dict):
            raise AuthenticationError(
                f"{url} answered {resp.status} without a token; is this Keystone v3?"
            )
        storage_url = self._endpoint(data.get("catalog") or [])
        expires_at = _expiry(data.get("expires_at"))
        log.debug(
            "authenticated %s at Keystone %s (token expires %s)",
            self._who(),
            self.auth_url,
            data.get("expires_at"),
        )
        return Token(storage_url, token, expires_at)

    def _endpoint(self, catalog: list[dict[str, Any]]) -> str:
        found: list[dict[str, Any]] = []
        for service in catalog:
            if service.get("type") == "object-store":
                found += service.get("endpoints") or []
        usable = [e for e in found if e.get("interface") == self.interface]
        if self.region:
            usable = [e for e in usable if self.region in (e.get("region"), e.get("region_id"))]
        if not usable:
            offered = sorted(
                {f"{e.get('interface')}@{e.get('region') or e.get('region_id')}" for e in found}
            ) or ["none"]
            raise ConfigurationError(
                f"Keystone's catalog for {self._who()} has no object-store endpoint with "
                f"interface {self.interface!r}"
                + (f" in region {self.region!r}" if self.region else "")
                + f"; it offers: {', '.join(offered)} (set OS_INTERFACE / OS_REGION_NAME)"
            )
        if len(usable) > 1 and not self.region:
            log.info(
                "several object-store endpoints; using region %s (set a region to choose)",
                usable[0].get("region"),
            )
        return str(usable[0]["url"]).rstrip("/")


class KeystonePassword(_KeystoneV3):
    """Keystone v3 ``password`` auth, scoped to a project (``OS_USERNAME``/``OS_PASSWORD``...).

    ``options`` are ``KeystoneOptions`` (region, interface, verify_tls, cacert, trust,
    timeout, travels).
    """

    def __init__(
        self,
        auth_url: str,
        username: str,
        password: str,
        *,
        project_name: str | None = None,
        project_id: str | None = None,
        user_domain_name: str | None = "Default",
        user_domain_id: str | None = None,
        project_domain_name: str | None = "Default",
        project_domain_id: str | None = None,
        **options: Unpack[KeystoneOptions],
    ) -> None:
        if not username or not password:
            raise ConfigurationError("Keystone password auth needs a username and a password")
        if not (project_name or project_id):
            raise ConfigurationError(
                "Keystone password auth needs a project (OS_PROJECT_NAME or OS_PROJECT_ID): "
                "Swift needs a project-scoped token"
            )
        super().__init__(auth_url, password, **options)
        self.username = username
        self.project_name, self.project_id = project_name, project_id
        self.user_domain_name, self.user_domain_id = user_domain_name, user_domain_id
        self.project_domain_name, self.project_domain_id = project_domain_name, project_domain_id

    def __repr__(self) -> str:
        return (
            f"KeystonePassword(auth_url={self.auth_url!r}, username={self.username!r}, "
            f"project={self.project_name or self.project_id!r}, password=***)"
        )

    def _who(self) -> str:
        return f"user {self.username!r} (project {self.project_name or self.project_id!r})"

    def _identity(self) -> dict[str, Any]:
        domain = (
            {"id": self.user_domain_id}
            if self.user_domain_id
            else {"name": self.user_domain_name or "Default"}
        )
        return {
            "methods": ["password"],
            "password": {
                "user": {"name": self.username, "domain": domain, "password": self._secret}
            },
        }

    def _scope(self) -> dict[str, Any]:
        if self.project_id:
            return {"project": {"id": self.project_id}}
        domain = (
            {"id": self.project_domain_id}
            if self.project_domain_id
            else {"name": self.project_domain_name or "Default"}
        )
        return {"project": {"name": self.project_name, "domain": domain}}


class KeystoneApplicationCredential(_KeystoneV3):
    """Keystone v3 application credential (``OS_APPLICATION_CREDENTIAL_ID``/``_SECRET``).

    The credential is bound to one project, so no scope is sent. ``options`` are
    ``KeystoneOptions`` (region, interface, verify_tls, cacert, trust, timeout, travels).
    """

    def __init__(
        self,
        auth_url: str,
        credential_id: str,
        secret: str,
        **options: Unpack[KeystoneOptions],
    ) -> None:
        if not credential_id or not secret:
            raise ConfigurationError("an application credential needs both its id and secret")
        super().__init__(auth_url, secret, **options)
        self.credential_id = credential_id

    def __repr__(self) -> str:
        return (
            f"KeystoneApplicationCredential(auth_url={self.auth_url!r}, "
            f"credential_id={self.credential_id!r}, secret=***)"
        )

    def _who(self) -> str:
        return f"application credential {self.credential_id!r}"

    def _identity(self) -> dict[str, Any]:
        return {
            "methods": ["application_credential"],
            "application_credential": {"id": self.credential_id, "secret": self._secret},
        }


KeystoneProvider = KeystonePassword | KeystoneApplicationCredential
"""What ``from_env`` and ``load_cloud`` build."""


# -- environment and clouds.yaml --------------------------------------------------------------
_KEYSTONE_VARS = (
    "OS_AUTH_URL",
    "OS_USERNAME",
    "OS_PASSWORD",
    "OS_APPLICATION_CREDENTIAL_ID",
    "OS_APPLICATION_CREDENTIAL_SECRET",
    "OS_CLOUD",
)


def from_env(
    env: Mapping[str, str],
    *,
    verify_tls: bool = True,
    cacert: str | os.PathLike[str] | None = None,
) -> KeystoneProvider | None:
    """A Keystone provider from ``OS_CLOUD`` or ``OS_AUTH_URL`` + ..., or None if neither is set.

    ``verify_tls``/``cacert`` are the explicit choice; else ``env``'s ``OS_CACERT``, the cloud's
    ``cacert``/``verify``, ... (``swift.tls.resolve_trust``).
    """
    if env.get("OS_CLOUD"):
        return load_cloud(env["OS_CLOUD"], env=env, verify_tls=verify_tls, cacert=cacert)
    if not env.get("OS_AUTH_URL"):
        return None
    if env.get("OS_IDENTITY_API_VERSION", "3").split(".")[0] != "3":
        raise ConfigurationError(
            f"OS_IDENTITY_API_VERSION={env['OS_IDENTITY_API_VERSION']} is not supported; only "
            "Keystone v3 is (or use v1 auth with ST_AUTH/ST_USER/ST_KEY)"
        )
    auth = {
        "auth_url": env.get("OS_AUTH_URL"),
        "username": env.get("OS_USERNAME"),
        "password": env.get("OS_PASSWORD"),
        "project_name": env.get("OS_PROJECT_NAME") or env.get("OS_TENANT_NAME"),
        "project_id": env.get("OS_PROJECT_ID") or env.get("OS_TENANT_ID"),
        "user_domain_name": env.get("OS_USER_DOMAIN_NAME"),
        "user_domain_id": env.get("OS_USER_DOMAIN_ID"),
        "project_domain_name": env.get("OS_PROJECT_DOMAIN_NAME"),
        "project_domain_id": env.get("OS_PROJECT_DOMAIN_ID"),
        "application_credential_id": env.get("OS_APPLICATION_CREDENTIAL_ID"),
        "application_credential_secret": env.get("OS_APPLICATION_CREDENTIAL_SECRET"),
    }
    return _from_auth(
        auth,
        region=env.get("OS_REGION_NAME"),
        interface=env.get("OS_INTERFACE") or env.get("OS_ENDPOINT_TYPE"),
        trust=resolve_trust(cacert, verify_tls=verify_tls, env=env),
        where="the OS_* environment variables",
    )


def _from_auth(
    auth: Mapping[str, Any],
    *,
    region: str | None,
    interface: str | None,
    trust: Trust,
    where: str,
) -> KeystoneProvider:
    interface = (interface or "public").removesuffix("URL")  # "publicURL" in old RC files
    url = auth.get("auth_url")
    if not url:
        raise ConfigurationError(f"no Keystone auth_url in {where}")
    if auth.get("application_credential_id") or auth.get("application_credential_secret"):
        return KeystoneApplicationCredential(
            url,
            auth.get("application_credential_id") or "",
            auth.get("application_credential_secret") or "",
            region=region,
            interface=interface,
            trust=trust,
        )
    missing = [n for n in ("username", "password") if not auth.get(n)]
    if not (auth.get("project_name") or auth.get("project_id")):
        missing.append("project_name or project_id")
    if missing:
        raise ConfigurationError(
            f"Keystone credentials in {where} are incomplete: missing {', '.join(missing)} (or "
            "give an application credential id and secret)"
        )
    return KeystonePassword(
        url,
        auth["username"],
        auth["password"],
        project_name=auth.get("project_name"),
        project_id=auth.get("project_id"),
        user_domain_name=auth.get("user_domain_name") or "Default",
        user_domain_id=auth.get("user_domain_id"),
        project_domain_name=auth.get("project_domain_name") or "Default",
        project_domain_id=auth.get("project_domain_id"),
        region=region,
        interface=interface,
        trust=trust,
    )


def _clouds_files(env: Mapping[str, str]) -> list[Path]:
    if env.get("OS_CLIENT_CONFIG_FILE"):
        return [Path(env["OS_CLIENT_CONFIG_FILE"]).expanduser()]
    return [
        Path.cwd() / "clouds.yaml",
        Path("~/.config/openstack/clouds.yaml").expanduser(),
        Path("/etc/openstack/clouds.yaml"),
    ]


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def load_cloud(
    name: str,
    *,
    env: Mapping[str, str] | None = None,
    verify_tls: bool = True,
    cacert: str | os.PathLike[str] | None = None,
) -> KeystoneProvider:
    """The provider for cloud ``name`` of the first ``clouds.yaml`` found (with ``secure.yaml``
    next to it merged in, as openstacksdk does).

    The cloud's ``cacert`` (a path, ``~`` expanded) and ``verify: false`` apply to Keystone and
    to the storage URL alike; an explicit ``cacert``/``verify_tls`` and ``OS_CACERT`` win over
    them (``swift.tls.resolve_trust``).
    """
    import yaml

    env = os.environ if env is None else env
    for path in _clouds_files(env):
        if not path.is_file():
            continue
        clouds = (yaml.safe_load(path.read_text()) or {}).get("clouds") or {}
        if name not in clouds:
            continue
        cloud = clouds[name] or {}
        secure = path.with_name("secure.yaml")
        if secure.is_file():
            cloud = _merge(
                cloud,
                ((yaml.safe_load(secure.read_text()) or {}).get("clouds") or {}).get(name) or {},
            )
        where = f"cloud {name!r} of {path}"
        site: Trust | None = None
        if cloud.get("verify", True) is False:
            site = Trust(None, False, f"verify: false of {where}")
        elif cloud.get("cacert"):
            site = Trust(str(Path(str(cloud["cacert"])).expanduser()), True, f"cacert of {where}")
        return _from_auth(
            cloud.get("auth") or {},
            region=cloud.get("region_name"),
            interface=cloud.get("interface"),
            trust=resolve_trust(cacert, verify_tls=verify_tls, site=site, env=env),
            where=where,
        )
    searched = ", ".join(str(p) for p in _clouds_files(env))
    raise ConfigurationError(f"OS_CLOUD={name!r} is not in any clouds.yaml (searched {searched})")
