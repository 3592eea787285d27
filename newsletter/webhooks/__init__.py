"""Outgoing webhooks: events queued with the change that caused them, posted signed to endpoints.

:mod:`.events` names the events and queues them (:func:`emit`, in the caller's transaction);
:mod:`.outbound` claims what is due, posts it per the Standard Webhooks specification and records
the answer (retries with backoff, disabling an endpoint after a run of failures).
"""
