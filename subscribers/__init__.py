"""The subscriber list: model, state machine, addresses, tokens, import and export.

``model`` (rows and the legal status moves), ``addresses`` (normalisation), ``tokens`` (signed links),
``service`` (add, import, export), ``signup`` (double opt-in, leaving, coming back), ``preferences``
(what a subscriber receives), ``privacy`` (suppression hashes, GDPR export and erasure) and
``ratelimit`` (limits shared by every process, in the database).

This package imports nothing from :mod:`newsletter`; the newsletter wires it in.
"""
