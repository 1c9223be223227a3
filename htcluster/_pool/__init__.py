"""The pool layer: ``ConnectionPool`` lends connections to one host as leases, under one lock, FIFO waiters."""
