"""Storage backends that implement the core's ports: SQLite, the default."""
