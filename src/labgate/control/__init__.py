"""labgate.control"""
