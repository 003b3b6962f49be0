//! The integration tests of `swarmwall-capture` in one test binary (`cargo test -p
//! swarmwall-capture --test integration`): the public `inspect` API from outside the crate.

mod robustness;
