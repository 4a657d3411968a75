"""gicls.audit: the audit log's schema, reader, verify, summary, exports and the gicls-audit CLI.

Imports run one way: the daemon (the log's writer) imports gicls.audit, never the reverse, so
reviewing a log never loads the daemon or TensorFlow.
"""
