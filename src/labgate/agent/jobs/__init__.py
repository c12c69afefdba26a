"""Jobs on the device: poll, verify, check against the device's own list, run, report.

`types` holds what a handler sees (`Job`, `JobContext`) and the errors it raises; `registry`
the job types this device runs (its list is the last word); `document` the check of a signed job
(the jobs key from the JWKS fetched over the pinned server CA, the binding to this device, the
deadline, a replay); `poller` the loop; `builtin` and `install` the handlers.
"""
