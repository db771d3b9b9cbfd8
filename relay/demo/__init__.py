"""`make run` (DESIGN §8): the story told on the local stack (`relay.local`) — a producer and
the worker against moto's SQS and the Transfer Family emulator, with live progress and a
summary that accounts for every message; then the bulk replay an operator runs after it
(DESIGN §11: which copies can still help), and the accounting again.

The demo owns its process, so it points the standard AWS chain at loopback the way a deployment
points it at AWS. moto runs in a child process; the emulator, the producer and the worker share
this one's event loop.

`mix` is what the producer sends, `story` runs it all, `accounting` counts what came of it,
`panel` shows it and `replay_act` is the bulk replay. Only `relay.cli` imports the demo; tests
run it as a process.
"""

from relay.demo.story import run_demo

__all__ = ["run_demo"]
