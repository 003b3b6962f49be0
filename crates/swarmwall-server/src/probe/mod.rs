//! `swarmwall probe`: active self-test of a SOCKS5 node with synthetic BitTorrent forms and benign controls.
