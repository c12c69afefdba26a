"""labgate.auth"""
