"""Acting on events as they arrive: rules, a durable outbox, and deliveries that never give
up quietly.

- :mod:`ingest.actions.rules`: which events each ``[actions.<name>]`` takes;
- :mod:`ingest.actions.tailer`: follows the spool and records matched actions in the outbox
  (:mod:`ingest.spool.outbox`, in the spool's own store);
- :mod:`ingest.actions.dispatcher`: delivers due actions, one lane per action
  (:mod:`ingest.actions.breaker`), retrying by :mod:`ingest.actions.retry`;
- :mod:`ingest.actions.destinations`: what an action can do (webhook, slack, suppress);
- :mod:`ingest.actions.runner`: all of it inside ``mailpulse serve``.
"""
