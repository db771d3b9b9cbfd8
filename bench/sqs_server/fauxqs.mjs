// The benchmark's SQS endpoint: fauxqs's app on 127.0.0.1 only (its startFauxqs() always binds
// 0.0.0.0). Port 0 picks a free one; the first line on stdout says where it listens.
// It stops on SIGTERM/SIGINT, and when its parent closes stdin (so a dead harness leaves no server).
import { buildApp } from "fauxqs";

const HOST = "127.0.0.1";
const port = Number.parseInt(process.argv[2] ?? "0", 10);
const app = buildApp({ logger: false });
const address = await app.listen({ port, host: HOST });
console.log(`fauxqs listening on ${address}`);

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  // A hung close must not keep the process alive.
  setTimeout(() => process.exit(0), 2000).unref();
  app.close().finally(() => process.exit(0));
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.on("error", stop);
process.stdin.resume();
