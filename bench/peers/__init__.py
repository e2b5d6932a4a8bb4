"""Peers for `make bench`: the same minimal stateful job written with other stream processors.

They import nothing from `processor`, so they also run from a venv of their own (Quix Streams
lives in `.cache/bench-quix-venv`, never a project dependency)."""
