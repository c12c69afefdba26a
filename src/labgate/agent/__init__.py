"""The device side: linking a device to an account, its own key and certificate, renewal."""
