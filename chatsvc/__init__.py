"""chatsvc: a chat server built on Twisted."""
