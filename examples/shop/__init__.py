"""A small online shop's background jobs: the example app of examples/quickstart.py."""
