"""Alert rules evaluated on the stored stream (issue 13).

Modules, one job each: ``model`` (rule JSON and its validation), ``matcher`` (filters on
stored rows), ``windows`` (event-time window state), ``evaluator`` (rules over a feed page),
``sigma`` (Sigma import), ``storage`` (SQLite: rules, alerts, state, deliveries),
``targets`` (SSRF checks), ``signing`` (webhook HMAC), ``delivery`` (webhook/Slack sender),
``audit_events`` (the audit-log events of alerting), ``follower`` (the service that runs it).
"""
