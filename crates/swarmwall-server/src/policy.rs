//! Destination policy: rules (CIDR, ports, domain suffixes) and the lateral-movement guard; per-traffic-class actions.
