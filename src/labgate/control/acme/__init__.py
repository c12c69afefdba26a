"""ACME (RFC 8555) for labgate's CA: accounts bound to administrator-made external account
credentials, orders, `http-01` and `tls-alpn-01` validation, issuance through the CA's server
profile, certificate download and revocation.

Everything a replica needs lives in the database (nonces, accounts, orders, the order counters),
so several replicas behind one address agree. No web framework here: the HTTP edge
(`labgate.control.http.routers.acme`) hands over the raw request body and URL and maps the
problems raised here to problem documents.
"""
