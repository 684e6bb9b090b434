"""Long-lived parts that own a socket, a thread or a clock."""
