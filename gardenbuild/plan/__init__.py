"""Pure planning: the resolved Garden -> a graph of content-keyed steps, rendered files and the lock."""
