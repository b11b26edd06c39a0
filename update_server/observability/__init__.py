"""How the server stands, seen from outside (R38): status, readiness and Prometheus metrics.

``status`` (``GET /api/v1/status``, ``fwserver status``), ``readiness``
(``GET /readyz``), ``metrics`` (``GET /metrics``, and the counters other parts
call: ``metrics.count_alert``), ``views`` (the routes and ``init_app``).
"""
