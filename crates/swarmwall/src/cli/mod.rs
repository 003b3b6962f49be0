//! One module per subcommand.

pub(crate) mod admin_audit;
pub(crate) mod audit;
pub(crate) mod inspect;
pub(crate) mod man;
pub(crate) mod monitor;
pub(crate) mod probe;
pub(crate) mod serve;
pub(crate) mod store;
pub(crate) mod strikes;
pub(crate) mod user;
pub(crate) mod user_store;
