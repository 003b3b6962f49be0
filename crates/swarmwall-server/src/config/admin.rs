//! The `[admin]` section of the configuration file.

use serde::Deserialize;

/// `[admin]` keys (see README, "Configuration reference").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {}
