"""MeshGuard-compatible governance gateway: policies, agent tokens, rate limits,
approvals and an audit trail for autonomous agents.

The policy language and its evaluation (``policy``, ``engine``, ``ratelimit``) are
pure; the store, HTTP app and CLI sit at the edges around them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
