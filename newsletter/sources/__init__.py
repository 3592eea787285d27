"""Sources: news feeds and market data, over HTTP or from local recorded files.

The package imports none of its modules: the digest needs only :mod:`~newsletter.sources.validation`,
and a worker starts without the HTTP and feed libraries.
"""
