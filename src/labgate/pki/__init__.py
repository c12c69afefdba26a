"""labgate.pki"""
