//! The SOCKS5 server: listener, session, relay, UDP ASSOCIATE, BIND, limits, shutdown.
