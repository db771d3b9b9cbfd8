"""The DLQ tools: reading a DLQ once through (`scan`), `dlq stats`, `dlq export` and `replay`.

Each command is an async function that returns a summary; `relay.cli` runs it and prints the
summary with `relay.terminal`. Reading a DLQ changes nothing by itself: each message read is
held invisible while the scan runs (so it is read once), its lease renewed while the command
still needs it, then deleted (only after its replay succeeded) or made visible again at once.
"""
