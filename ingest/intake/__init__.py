"""HTTP intake: the Flask receiver (authenticate, spool, answer) and the server that runs it."""
