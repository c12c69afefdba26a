"""`labgate scan`: a gentle security scan of instrument endpoints and any TLS endpoint.

One job per module: `budget` (the connection budget every probe goes through), `targets` (what
is scanned), `hello` (TLS ClientHello/ServerHello probes), `profiles` (suite grading), `tlsprobe`
(protocol matrix, suites, certificate), `scpiprobe` (banner, password-free level, weak
passwords), `findings` (what the facts mean), `scanner` (the order of the probes), `report`
(table and JSON).
"""
