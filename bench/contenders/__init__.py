"""The contenders that are not relay, each a script run as its own process by the harness.

Each prints one JSON summary line on stdout when it ends (done, deadline or SIGTERM), so the
harness can account for what it discarded. They import nothing from relay.
"""
