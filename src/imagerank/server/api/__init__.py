"""The HTTP API of the server: `main` gathers the routers of `routes` under ``/api``."""
