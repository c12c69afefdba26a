"""labgate.scpi: the QuantStudio SCPI protocol with no I/O: framing, messages, names, access levels.

Bytes in, messages out, and back; nothing here opens a socket or runs an event loop.
"""
