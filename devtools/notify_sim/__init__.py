"""A development-only GC Notify / GOV.UK Notify v2 API simulator (see server.py)."""

from devtools.notify_sim.server import NotifySimulator

__all__ = ["NotifySimulator"]
