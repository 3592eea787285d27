"""Use cases that join the subscriber list with the rest of the newsletter (deliveries, reports).

The doors (CLI, web, scheduler) call these; ``subscribers`` stays free of ``newsletter``.
"""
