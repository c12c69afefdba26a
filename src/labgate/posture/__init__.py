"""The enhanced-security mode (`[secure]`): what each switch means, read alike by the gateway, the
control server and `labgate secure`. A core: no sockets, no event loop, no web framework."""
