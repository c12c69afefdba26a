"""labgate.gateway"""
