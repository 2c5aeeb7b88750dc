// Real BullMQ (Node) producer and worker for the sidecar's queue integration tests.
//
//   node bullmq_jobs.mjs produce <redis-url> <queue> <waiting> <failing> <delay-ms>
//     adds <waiting> jobs (the last <failing> of them fail when processed) and one job delayed by
//     <delay-ms>; prints {"added": n} and exits.
//   node bullmq_jobs.mjs drain <redis-url> <queue> <jobs>
//     runs a Worker (metrics enabled) until <jobs> jobs completed or failed; prints the tallies.
//   node bullmq_jobs.mjs serve <redis-url> <queue>
//     runs an idle Worker, prints "ready", and exits when its standard input closes.
//
// Every run is bounded: it gives up after 30 seconds.
import { Queue, Worker } from "bullmq";

const [mode, url, name, ...rest] = process.argv.slice(2);
const parsed = new URL(url);
const connection = {
  host: parsed.hostname,
  port: Number(parsed.port || 6379),
  db: Number(parsed.pathname.slice(1) || 0),
  maxRetriesPerRequest: null,
};
const deadline = setTimeout(() => {
  console.error(`bullmq_jobs ${mode}: gave up after 30s`);
  process.exit(3);
}, 30_000);

async function produce(waiting, failing, delayMs) {
  const queue = new Queue(name, { connection });
  for (let i = 0; i < waiting; i++) {
    await queue.add("job", { i, fail: i >= waiting - failing });
  }
  await queue.add("later", { i: waiting, fail: false }, { delay: delayMs });
  await queue.close();
  console.log(JSON.stringify({ added: waiting + 1 }));
}

async function drain(jobs) {
  let completed = 0;
  let failed = 0;
  const worker = new Worker(
    name,
    async (job) => {
      if (job.data.fail) throw new Error("planned failure");
      return job.data.i;
    },
    { connection, metrics: { maxDataPoints: 60 } },
  );
  await new Promise((resolve) => {
    const check = () => completed + failed >= jobs && resolve();
    worker.on("completed", () => { completed++; check(); });
    worker.on("failed", () => { failed++; check(); });
  });
  await worker.close();
  console.log(JSON.stringify({ completed, failed }));
}

async function serve() {
  const worker = new Worker(name, async () => 0, { connection });
  await worker.waitUntilReady();
  clearTimeout(deadline);
  setTimeout(() => process.exit(0), 60_000).unref();
  console.log("ready");
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on("end", resolve));
  await worker.close();
}

try {
  if (mode === "produce") await produce(Number(rest[0]), Number(rest[1]), Number(rest[2]));
  else if (mode === "drain") await drain(Number(rest[0]));
  else if (mode === "serve") await serve();
  else throw new Error(`unknown mode ${mode}`);
} catch (err) {
  console.error(err);
  process.exit(2);
}
clearTimeout(deadline);
process.exit(0);
