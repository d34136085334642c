"""Adapters to the outside world that the domain talks to through protocols."""
