"""The stream runtime and its stages: :mod:`agents.topology` declares the flow, one module per stage."""
