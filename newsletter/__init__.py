"""A self-hosted daily crypto-insights email newsletter.

Importing this package does no I/O: settings, the database and the transports are built by
:mod:`newsletter.bootstrap` when a command runs.
"""

__version__ = "0.1.0"
