"""labgate.agent"""
