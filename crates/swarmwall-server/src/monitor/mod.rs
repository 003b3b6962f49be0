//! `swarmwall monitor`: watch known swarms for the operator's own egress addresses.
