"""labgate.auth: the security rules of the control server, with no I/O.

Password hashing and policies, access-token minting and verification, refresh-token rotation
rules, failed-login throttling and linking codes. Every function here is pure or works on values
handed to it: the server owns storage, the clock and the network, and passes `now` in.
"""
