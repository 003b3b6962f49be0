//! SOCKS5 (RFC 1928) and RFC 1929 wire types, codec and server handshake state machine.
