"""The control server's HTTP edge: the application, its routers, dependencies, the error map,
the outermost middleware, the connection layer and serving on uvicorn.

Everything here speaks HTTP and maps to and from the domain in `labgate.control`; the domain
modules import nothing from this package.
"""
