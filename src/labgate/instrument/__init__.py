"""labgate.instrument"""
