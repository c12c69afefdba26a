"""labgate.gateway: mutual TLS in front of instruments, every SCPI command checked.

One job per module:
- `config`: the TOML configuration, checked and refused with the key named.
- `accept`: accepting connections and upgrading them to TLS, failures visible.
- `client_tls`: the TLS context clients meet, and what a client certificate says.
- `state`: what a reload replaces at once (contexts, grants, revocations).
- `grants`: which identity may use which instrument, up to which level.
- `refusal`: telling a verified but refused client why, in words qslib shows.
- `upstream`: plain, TLS and SSLv3 connections to the instrument, pinned and logged in.
- `slots`: how many upstream sessions an instrument may have, and the bounded wait for one.
- `protocol`: the line protocol an instrument speaks, as one small interface; `quantstudio`
  is QuantStudio's SCPI wired into it (framing, login, greeting and refusal lines, levels).
- `filter`: the per-session decisions on every message (no I/O): QuantStudio's policy.
- `session`: relaying one session through the filter, with its timeouts.
- `server`: the running gateway: admission, reload, shutdown.
- `reload`: when to reload (SIGHUP, changed files) and the control server's bundles.
- `bundles`: verifying signed grant and CRL bundles.
- `audit`, `auditchain`: the hash-chained audit log.
- `metrics`, `pins`, `revocation`, `errors`: what their names say.
"""
