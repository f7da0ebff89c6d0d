"""Execution: a plan run against the step store and a container backend, and what reads its results."""
