"""Real stand-ins for the services around Victor, used by tests and benchmarks."""
