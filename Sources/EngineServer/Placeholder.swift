import WAL
