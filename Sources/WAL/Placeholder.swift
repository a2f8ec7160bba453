// WAL module
