"""Hubs: a task, its benchmark data and metrics, and the gardens that compete on it.

`spec` reads and validates ``Hubfile.toml`` and its data; `metrics` are the built-in
metrics (pure); `bench` runs the members and keeps their scores in the catalog; `page`
writes the hub's leaderboard page beside the members' model pages.
"""
