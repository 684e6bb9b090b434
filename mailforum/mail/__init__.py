"""Pure RFC 5322 work on bytes and strings: no database, no sockets."""
