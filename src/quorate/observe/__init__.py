"""What operators read: Prometheus metrics of a node (``metrics``).

The structured logs are the node's JSON Lines (``quorate.cli.node``) and the
audit trail of decisions is replicated state (``quorate.state.agents.audit``,
``quorate audit``).
"""
