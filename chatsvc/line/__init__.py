"""The line door: chatsvc over a plain TCP, TLS or UNIX stream, one UTF-8 line at a time."""
