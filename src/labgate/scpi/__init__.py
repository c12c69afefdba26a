"""labgate.scpi"""
