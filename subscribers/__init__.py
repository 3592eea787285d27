"""The subscriber list: model, state machine, addresses, tokens, import and export.

This package imports nothing from :mod:`newsletter`; the newsletter wires it in.
"""
