"""Typed, frozen configuration: parsed and validated once, every problem reported at once."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from sidecar.paths import as_mounted
from sidecar.yamlio import UniqueKeyLoader, yaml_problem

ALLOWED_OAUTH_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}
)


MIN_JWKS_REFRESH_SECONDS = 1.0
MIN_UNKNOWN_KID_REFETCH_SECONDS = 0.1


class ConfigError(Exception):
    """The configuration is invalid; `problems` lists every problem with its key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


@dataclass(frozen=True)
class Listen:
    grpc: str
    http: str
    explain: str = ""
    reflection: bool = False


@dataclass(frozen=True)
class LogConfig:
    allow_sample_rate: float = 0.01


@dataclass(frozen=True)
class ResolverConfig:
    url: str = ""
    timeout_ms: int = 100
    cache_ttl_seconds: float = 60.0


@dataclass(frozen=True)
class ApiConfig:
    base_paths: tuple[str, ...] = (
        "/jsm/assets/workspace/{workspaceId}/v1",
        "/gateway/api/jsm/assets/workspace/{workspaceId}/v1",
    )
    imports_info_path: str = "/jsm/assets/v1/imports/info"
    outside_base_paths: str = "deny"


@dataclass(frozen=True)
class Issuer:
    issuer: str
    jwks_uri: str = ""
    discovery: bool = False
    audiences: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = ("RS256",)
    leeway_seconds: float = 60.0
    jwks_refresh_seconds: float = 300.0
    unknown_kid_refetch_seconds: float = 30.0
    unknown_kid_wait_ms: float = 100.0
    jwks_stale_max_seconds: float = 3600.0


@dataclass(frozen=True)
class OAuthConfig:
    issuers: tuple[Issuer, ...] = ()


@dataclass(frozen=True)
class ConnectConfig:
    enabled: bool = True
    leeway_seconds: float = 30.0
    max_lifetime_seconds: float = 3600.0
    qsh_strip_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResponseConfig:
    header_prefix: str = "x-assets-"
    remove_authorization: bool = True


@dataclass(frozen=True)
class Config:
    listen: Listen
    store: str
    store_path: Path | None  # the SQLite file, resolved against the config's folder
    path: Path | None = None  # the config file itself
    store_stale_max_seconds: float = 300.0
    policy_file: Path | None = None
    shutdown_grace_seconds: float = 10.0
    log: LogConfig = field(default_factory=LogConfig)
    resolver: ResolverConfig = field(default_factory=ResolverConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    oauth: OAuthConfig = field(default_factory=OAuthConfig)
    connect: ConnectConfig = field(default_factory=ConnectConfig)
    api_tokens_enabled: bool = True
    container_tokens_enabled: bool = True
    response: ResponseConfig = field(default_factory=ResponseConfig)
    dry_run: bool = False


T = TypeVar("T")


class _Reader:
    """Walks a YAML mapping, recording every problem with its dotted key."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def section(self, data: Any, where: str, allowed: set[str]) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.problems.append(f"{where or 'top level'}: must be a mapping")
            return {}
        for key in data:
            if key not in allowed:
                self.problems.append(f"{_join(where, str(key))}: unknown key")
        return data

    def get(
        self,
        data: dict[str, Any],
        where: str,
        key: str,
        kind: Callable[[Any], T | None],
        default: T,
        *,
        required: bool = False,
    ) -> T:
        if key not in data or data[key] is None:
            if required:
                self.problems.append(f"{_join(where, key)}: is required")
            return default
        value = kind(data[key])
        if value is None:
            self.problems.append(f"{_join(where, key)}: invalid value {data[key]!r}")
            return default
        return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _nonneg(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        return None
    return float(v)


def _pos_int(v: Any) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        return None
    return v


def _str_list(v: Any) -> tuple[str, ...] | None:
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return tuple(v)
    return None


def _address(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    return v


_WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", ""}  # noqa: S104 - compared, never bound


def _collide(a: str, b: str) -> bool:
    """Whether two listen addresses would need the same socket (port 0 picks a free one)."""
    host_a, _, port_a = a.rpartition(":")
    host_b, _, port_b = b.rpartition(":")
    if port_a != port_b or int(port_a) == 0:
        return False
    return host_a == host_b or host_a in _WILDCARD_HOSTS or host_b in _WILDCARD_HOSTS


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_url(r: _Reader, where: str, url: str, *, https_only: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        r.problems.append(f"{where}: not an http(s) URL: {url!r}")
    elif https_only and parts.scheme == "http" and not is_loopback_host(parts.hostname):
        r.problems.append(f"{where}: must be https (plain http only for loopback hosts)")


def _issuer(r: _Reader, raw: Any, where: str) -> Issuer | None:
    d = r.section(
        raw,
        where,
        {
            "issuer", "jwks_uri", "discovery", "audiences", "algorithms", "leeway_seconds",
            "jwks_refresh_seconds", "unknown_kid_refetch_seconds", "unknown_kid_wait_ms",
            "jwks_stale_max_seconds",
        },
    )
    if not d:
        return None
    defaults = Issuer(issuer="")
    iss = r.get(d, where, "issuer", _str, "", required=True)
    jwks_uri = r.get(d, where, "jwks_uri", _str, "")
    discovery = r.get(d, where, "discovery", _bool, False)
    if not jwks_uri and not discovery:
        r.problems.append(f"{where}: needs jwks_uri or discovery: true")
    if jwks_uri:
        _check_url(r, f"{where}.jwks_uri", jwks_uri, https_only=True)
    if discovery and iss:
        _check_url(r, f"{where}.issuer", iss, https_only=True)
    algorithms = r.get(d, where, "algorithms", _str_list, defaults.algorithms)
    for alg in algorithms:
        if alg not in ALLOWED_OAUTH_ALGORITHMS:
            r.problems.append(
                f"{where}.algorithms: {alg!r} not allowed (asymmetric algorithms only)"
            )
    audiences: tuple[str, ...] = r.get(d, where, "audiences", _str_list, ())
    result = Issuer(
        issuer=iss,
        jwks_uri=jwks_uri,
        discovery=discovery,
        audiences=audiences,
        algorithms=algorithms,
        leeway_seconds=r.get(d, where, "leeway_seconds", _nonneg, defaults.leeway_seconds),
        jwks_refresh_seconds=r.get(
            d, where, "jwks_refresh_seconds", _nonneg, defaults.jwks_refresh_seconds
        ),
        unknown_kid_refetch_seconds=r.get(
            d, where, "unknown_kid_refetch_seconds", _nonneg, defaults.unknown_kid_refetch_seconds
        ),
        unknown_kid_wait_ms=r.get(
            d, where, "unknown_kid_wait_ms", _nonneg, defaults.unknown_kid_wait_ms
        ),
        jwks_stale_max_seconds=r.get(
            d, where, "jwks_stale_max_seconds", _nonneg, defaults.jwks_stale_max_seconds
        ),
    )
    if result.jwks_refresh_seconds < MIN_JWKS_REFRESH_SECONDS:
        r.problems.append(
            f"{where}.jwks_refresh_seconds: must be at least {MIN_JWKS_REFRESH_SECONDS:g} "
            "(a shorter interval fetches the issuer's keys without pause)"
        )
    if result.unknown_kid_refetch_seconds < MIN_UNKNOWN_KID_REFETCH_SECONDS:
        r.problems.append(
            f"{where}.unknown_kid_refetch_seconds: must be at least "
            f"{MIN_UNKNOWN_KID_REFETCH_SECONDS:g} (the refetch for an unseen kid must stay "
            "rate-limited: anyone can send a token with a made-up kid)"
        )
    if result.jwks_stale_max_seconds < result.jwks_refresh_seconds:
        r.problems.append(
            f"{where}.jwks_stale_max_seconds: must be at least jwks_refresh_seconds "
            "(keys would go stale between refreshes)"
        )
    return result


def resolve_store(store: str, base: Path) -> tuple[Path | None, str | None]:
    """Return (sqlite path, problem) for a store URL; relative paths are against `base`."""
    if store.startswith("sqlite:////"):
        return Path(store[len("sqlite:///") :]), None
    if store.startswith("sqlite:///"):
        rel = store[len("sqlite:///") :]
        if not rel:
            return None, "store: sqlite URL has no path"
        return (base / rel).resolve(), None
    if store.startswith(("postgresql://", "postgres://")):
        return None, "store: postgresql stores are not supported by this build (use sqlite)"
    return None, f"store: unsupported store URL {store!r}"


_TOP = {
    "listen", "store", "store_stale_max_seconds", "policy_file", "shutdown_grace_seconds", "log",
    "resolver", "api", "oauth", "connect", "api_tokens", "container_tokens", "response", "dry_run",
}


def parse_config(data: Any, *, source: str = "<config>", base: Path | None = None) -> Config:
    """Validate a parsed YAML document; raise ConfigError listing every problem."""
    r = _Reader()
    base = base or Path.cwd()
    top = r.section(data, "", _TOP)
    if data is None or not isinstance(data, dict):
        raise ConfigError(source, r.problems or ["top level: must be a mapping"])

    ld = r.section(top.get("listen"), "listen", {"grpc", "http", "explain", "reflection"})
    if "listen" not in top:
        r.problems.append("listen: is required")
    listen = Listen(
        grpc=r.get(ld, "listen", "grpc", _address, "127.0.0.1:9191", required=True),
        http=r.get(ld, "listen", "http", _address, "127.0.0.1:9192", required=True),
        explain=r.get(ld, "listen", "explain", lambda v: v if v == "" else _address(v), ""),
        reflection=r.get(ld, "listen", "reflection", _bool, False),
    )
    if listen.explain:
        host = listen.explain.rpartition(":")[0]
        if not is_loopback_host(host):
            r.problems.append("listen.explain: must be a loopback address")
    named = [("grpc", listen.grpc), ("http", listen.http), ("explain", listen.explain)]
    for i, (name, address) in enumerate(named):
        for other, other_address in named[:i]:
            if address and other_address and _collide(address, other_address):
                r.problems.append(f"listen.{name}: {address} is also listen.{other}")

    store = r.get(top, "", "store", _str, "", required=True)
    store_path: Path | None = None
    if store:
        store_path, problem = resolve_store(store, base)
        if problem:
            r.problems.append(problem)

    policy_raw = r.get(top, "", "policy_file", _str, "")
    policy_file = as_mounted(base / policy_raw) if policy_raw else None
    if policy_file is not None and not policy_file.is_file():
        r.problems.append(f"policy_file: {policy_file} does not exist")

    lg = r.section(top.get("log"), "log", {"allow_sample_rate"})
    rate = r.get(lg, "log", "allow_sample_rate", _nonneg, 0.01)
    if rate > 1:
        r.problems.append("log.allow_sample_rate: must be between 0 and 1")

    rd = r.section(top.get("resolver"), "resolver", {"url", "timeout_ms", "cache_ttl_seconds"})
    resolver = ResolverConfig(
        url=r.get(rd, "resolver", "url", _str, ""),
        timeout_ms=r.get(rd, "resolver", "timeout_ms", _pos_int, 100),
        cache_ttl_seconds=r.get(rd, "resolver", "cache_ttl_seconds", _nonneg, 60.0),
    )
    if resolver.url:
        _check_url(r, "resolver.url", resolver.url, https_only=False)

    ad = r.section(top.get("api"), "api", {"base_paths", "imports_info_path", "outside_base_paths"})
    api_defaults = ApiConfig()
    api = ApiConfig(
        base_paths=r.get(ad, "api", "base_paths", _str_list, api_defaults.base_paths),
        imports_info_path=r.get(
            ad, "api", "imports_info_path", _str, api_defaults.imports_info_path
        ),
        outside_base_paths=r.get(
            ad, "api", "outside_base_paths", lambda v: v if v in ("deny", "allow") else None,
            "deny",
        ),
    )
    for i, bp in enumerate(api.base_paths):
        if not bp.startswith("/") or bp.endswith("/") or "//" in bp:
            r.problems.append(f"api.base_paths[{i}]: must start with '/' and not end with '/'")
        elif bp.count("{workspaceId}") != 1:
            r.problems.append(f"api.base_paths[{i}]: must contain {{workspaceId}} exactly once")
    if not api.imports_info_path.startswith("/") or api.imports_info_path.endswith("/"):
        r.problems.append("api.imports_info_path: must start with '/' and not end with '/'")

    od = r.section(top.get("oauth"), "oauth", {"issuers"})
    issuers: list[Issuer] = []
    raw_issuers = od.get("issuers") or []
    if not isinstance(raw_issuers, list):
        r.problems.append("oauth.issuers: must be a list")
        raw_issuers = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_issuers):
        iss = _issuer(r, raw, f"oauth.issuers[{i}]")
        if iss is not None:
            if iss.issuer in seen:
                r.problems.append(f"oauth.issuers[{i}].issuer: duplicate {iss.issuer!r}")
            seen.add(iss.issuer)
            issuers.append(iss)

    cd = r.section(
        top.get("connect"), "connect",
        {"enabled", "leeway_seconds", "max_lifetime_seconds", "qsh_strip_prefixes"},
    )
    connect = ConnectConfig(
        enabled=r.get(cd, "connect", "enabled", _bool, True),
        leeway_seconds=r.get(cd, "connect", "leeway_seconds", _nonneg, 30.0),
        max_lifetime_seconds=r.get(cd, "connect", "max_lifetime_seconds", _nonneg, 3600.0),
        qsh_strip_prefixes=r.get(cd, "connect", "qsh_strip_prefixes", _str_list, ()),
    )
    for i, p in enumerate(connect.qsh_strip_prefixes):
        if not p.startswith("/") or p.endswith("/"):
            r.problems.append(
                f"connect.qsh_strip_prefixes[{i}]: must start with '/' and not end with '/'"
            )

    at = r.section(top.get("api_tokens"), "api_tokens", {"enabled"})
    ct = r.section(top.get("container_tokens"), "container_tokens", {"enabled"})
    rs = r.section(top.get("response"), "response", {"header_prefix", "remove_authorization"})
    response = ResponseConfig(
        header_prefix=r.get(rs, "response", "header_prefix", _str, "x-assets-").lower(),
        remove_authorization=r.get(rs, "response", "remove_authorization", _bool, True),
    )
    if not response.header_prefix or not response.header_prefix.replace("-", "").isalnum():
        r.problems.append("response.header_prefix: must be a non-empty header-name prefix")

    config = Config(
        listen=listen,
        store=store,
        store_path=store_path,
        store_stale_max_seconds=r.get(top, "", "store_stale_max_seconds", _nonneg, 300.0),
        policy_file=policy_file,
        shutdown_grace_seconds=r.get(top, "", "shutdown_grace_seconds", _nonneg, 10.0),
        log=LogConfig(allow_sample_rate=rate),
        resolver=resolver,
        api=api,
        oauth=OAuthConfig(issuers=tuple(issuers)),
        connect=connect,
        api_tokens_enabled=r.get(at, "api_tokens", "enabled", _bool, True),
        container_tokens_enabled=r.get(ct, "container_tokens", "enabled", _bool, True),
        response=response,
        dry_run=r.get(top, "", "dry_run", _bool, False),
    )
    if r.problems:
        raise ConfigError(source, r.problems)
    return config


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a configuration file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(p), [f"byte {exc.start}: not valid UTF-8"]) from None
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(str(p), [yaml_problem(exc)]) from None
    # Relative paths follow the mount, not the folder it points at now (sidecar/paths.py).
    config = parse_config(data, source=str(p), base=as_mounted(p).parent)
    return _with_path(config, as_mounted(p))


def _with_path(config: Config, path: Path) -> Config:
    from dataclasses import replace

    return replace(config, path=path)


def config_warnings(config: Config) -> list[str]:
    """Valid but risky settings, for `check-config` and the start-up log."""
    warnings = []
    for i, issuer in enumerate(config.oauth.issuers):
        if not issuer.audiences:
            warnings.append(
                f"oauth.issuers[{i}] ({issuer.issuer}): no audiences, so the audience check is "
                "off and a token this issuer made for any other API is accepted"
            )
    return warnings
