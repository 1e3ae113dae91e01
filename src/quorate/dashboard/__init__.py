"""``quorate dashboard``: a live page of a running cluster (Starlette and
server-sent events, one HTML page, no build step).

``state`` turns each round of node statuses into what the page shows (and
the events worth a line: leader changes, nodes lost and back, detections);
``app`` samples the cluster and serves the page, ``/state`` and ``/events``.
"""
