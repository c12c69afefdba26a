"""One router per resource; each route is thin and calls a plain function over the database."""
