"""`make bench`: relay against the floor and the alternatives, on local endpoints, side by side.

Not part of relay and not part of `make test`. See bench/README.md.
"""
