"""`python -m bench.dynamodb_server`: moto's DynamoDB (`relay.local.serve_moto`) as a process of
its own, so that its CPU is measured apart from the harness's and relay's.

Prints `dynamodb listening on URL`; each `calls ID` line on stdin is answered with a line
`calls ID {"PutItem": n, ...}` (the calls served so far, by operation); exits when stdin closes.
"""

import json
import sys

from relay.local import serve_moto


def main() -> None:
    """Serve until stdin closes."""
    with serve_moto("dynamodb") as server:
        print(f"dynamodb listening on {server.url}", flush=True)
        for line in sys.stdin:
            command, _, ident = line.strip().partition(" ")
            if command == "calls":
                # Read between runs, when no call is being served: the counter is not changing.
                print(f"calls {ident} {json.dumps(dict(server.calls))}", flush=True)


if __name__ == "__main__":
    main()
