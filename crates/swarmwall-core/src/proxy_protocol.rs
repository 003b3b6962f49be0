//! HAProxy PROXY protocol v1 and v2 header parsing (sans-IO).
