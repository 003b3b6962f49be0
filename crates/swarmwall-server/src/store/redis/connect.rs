//! How a node reaches Redis: the one server the URL names (TLS for `rediss://`, verified
//! against `[store] redis_ca_file` or the system roots), or the primary that Redis Sentinel
//! names for `[store] sentinel_master`, asked again once a second and at once after a failed
//! call, so a failover moves every node to the new primary within about a second.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, IntoConnectionInfo, TlsCertificates, TlsMode};

use crate::config::StoreConfig;
use crate::config::sentinel_address;
use crate::store::StoreError;

/// Where the connection goes.
pub(super) enum Target {
    /// One server.
    Direct(redis::Client),
    /// The primary the sentinels name.
    Sentinel {
        /// Asks the sentinels (one query at a time).
        client: tokio::sync::Mutex<SentinelClient>,
        /// The master name, for logs.
        master: String,
    },
}

impl Target {
    /// From `[store]`: the URL gives the password, database and TLS; with `sentinels` the
    /// host and port come from Sentinel.
    pub(super) fn new(config: &StoreConfig, url: &str, shown: &str) -> Result<Self, StoreError> {
        let invalid = |error: &dyn std::fmt::Display| {
            StoreError::Config(format!("`store.url` {shown}: {error}"))
        };
        let certificates = match &config.redis_ca_file {
            Some(path) => Some(TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(path).map_err(|error| {
                    StoreError::Config(format!("`store.redis_ca_file` {}: {error}", path.display()))
                })?),
            }),
            None => None,
        };
        if config.sentinels.is_empty() {
            let client = match certificates {
                Some(certificates) => redis::Client::build_with_tls(url, certificates),
                None => redis::Client::open(url),
            }
            .map_err(|error| invalid(&error))?;
            return Ok(Self::Direct(client));
        }
        let info = url
            .into_connection_info()
            .map_err(|error| invalid(&error))?;
        let settings = info.redis_settings();
        let tls = url.starts_with("rediss://");
        let addresses = config
            .sentinels
            .iter()
            .filter_map(|text| sentinel_address(text))
            .map(|(host, port)| ConnectionAddr::Tcp(host, port));
        let master = config.sentinel_master.clone().unwrap_or_default();
        let mut builder =
            SentinelClientBuilder::new(addresses, &master, SentinelServerType::Master)
                .map_err(|error| invalid(&error))?
                .set_client_to_redis_db(settings.db());
        if let Some(username) = settings.username() {
            builder = builder.set_client_to_redis_username(username);
            if config.sentinel_auth {
                builder = builder.set_client_to_sentinel_username(username);
            }
        }
        if let Some(password) = settings.password() {
            builder = builder.set_client_to_redis_password(password);
            if config.sentinel_auth {
                builder = builder.set_client_to_sentinel_password(password);
            }
        }
        if tls {
            builder = builder.set_client_to_redis_tls_mode(TlsMode::Secure);
            if let Some(certificates) = certificates {
                builder = builder.set_client_to_redis_certificates(certificates);
            }
        }
        let client = builder.build().map_err(|error| invalid(&error))?;
        Ok(Self::Sentinel {
            client: tokio::sync::Mutex::new(client),
            master,
        })
    }

    /// True when the primary is found through Sentinel.
    pub(super) fn is_sentinel(&self) -> bool {
        matches!(self, Self::Sentinel { .. })
    }

    /// A client for the server to use now (for Sentinel: ask, bounded by `timeout`).
    pub(super) async fn resolve(&self, timeout: Duration) -> Result<redis::Client, StoreError> {
        match self {
            Self::Direct(client) => Ok(client.clone()),
            Self::Sentinel { client, master } => {
                let ask = async {
                    let mut sentinel = client.lock().await;
                    sentinel.async_get_client().await
                };
                match tokio::time::timeout(timeout, ask).await {
                    Ok(Ok(client)) => Ok(client),
                    Ok(Err(error)) => Err(StoreError::Unavailable(format!(
                        "sentinels do not name a primary for `{master}`: {error}"
                    ))),
                    Err(_) => Err(StoreError::Timeout),
                }
            }
        }
    }
}

/// `HOST:PORT` of a client's server (no credentials).
pub(super) fn server_address(client: &redis::Client) -> String {
    client.get_connection_info().addr().to_string()
}

/// A lazily connecting manager for `client`, every call bounded by `timeout`.
pub(super) fn manager(
    client: redis::Client,
    timeout: Duration,
) -> Result<ConnectionManager, StoreError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|error| StoreError::Unavailable(error.to_string()))
}
