"""The web dashboard, a client of the REST API mounted under ``/dashboard``; see docs/dashboard.md."""

from .app import DashboardSettings, Identity, IdentityLookup, create_dashboard

__all__ = ["DashboardSettings", "Identity", "IdentityLookup", "create_dashboard"]
