"""routr-ray configuration: Routr v2 config and resource files, checked and turned into frozen objects.

Entry points:
    validate_paths(paths) -> list[ConfigError]     # what `routr-ray validate-config` uses
    load_config_dir(dir) -> ConfigSet              # what `routr-ray run` uses
    load_edgeport / load_dispatcher / load_location (file), load_resources(*paths)
    parse_redis_parameters(text) -> RedisParameters

The `load_*` functions raise ConfigInvalid carrying every error. See loader.py for what a path means.
"""

from routr_ray.config.dispatcher import AutoscalingConfig, DispatcherConfig, MiddlewareConfig, ProcessorConfig
from routr_ray.config.edgeport import (
    DEFAULT_METHODS,
    DEFAULT_PORTS,
    ConnectionLimits,
    EdgePortConfig,
    HealthConfig,
    RateLimit,
    SecurityContext,
    SourceFilter,
    TlsClientAuth,
    TlsClientConfig,
    Transport,
    TransportProtocol,
    UnknownMethodAction,
)
from routr_ray.config.errors import ConfigError, ConfigInvalid
from routr_ray.config.loader import (
    ConfigSet,
    load_config_dir,
    load_dispatcher,
    load_edgeport,
    load_location,
    load_resources,
    validate_paths,
)
from routr_ray.config.location import (
    CacheConfig,
    CacheProvider,
    LocationConfig,
    RedisParameters,
    parse_redis_parameters,
)
from routr_ray.config.resource_set import Resources
from routr_ray.config.resources import (
    AccessControlList,
    Agent,
    BalancingAlgorithm,
    Credentials,
    Domain,
    EgressPolicy,
    ExtraHeader,
    GeoInfo,
    Keepalive,
    LoadBalancing,
    Number,
    Peer,
    Privacy,
    Resource,
    Trunk,
    TrunkInbound,
    TrunkOutbound,
    TrunkUri,
    UriFormat,
)
from routr_ray.config.values import IPNetwork

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_PORTS",
    "AccessControlList",
    "Agent",
    "AutoscalingConfig",
    "BalancingAlgorithm",
    "CacheConfig",
    "CacheProvider",
    "ConfigError",
    "ConfigInvalid",
    "ConfigSet",
    "ConnectionLimits",
    "Credentials",
    "DispatcherConfig",
    "Domain",
    "EdgePortConfig",
    "EgressPolicy",
    "ExtraHeader",
    "GeoInfo",
    "Keepalive",
    "HealthConfig",
    "IPNetwork",
    "LoadBalancing",
    "LocationConfig",
    "MiddlewareConfig",
    "Number",
    "Peer",
    "Privacy",
    "ProcessorConfig",
    "RateLimit",
    "RedisParameters",
    "Resource",
    "Resources",
    "SecurityContext",
    "SourceFilter",
    "TlsClientAuth",
    "TlsClientConfig",
    "Transport",
    "TransportProtocol",
    "Trunk",
    "TrunkInbound",
    "TrunkOutbound",
    "TrunkUri",
    "UriFormat",
    "UnknownMethodAction",
    "load_config_dir",
    "load_dispatcher",
    "load_edgeport",
    "load_location",
    "load_resources",
    "parse_redis_parameters",
    "validate_paths",
]
