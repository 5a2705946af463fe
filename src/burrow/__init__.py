"""Burrow: a self-hosted tunnel service that speaks ngrok's protocols."""

__version__ = "0.1.0"
