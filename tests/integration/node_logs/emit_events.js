// Writes the app events that docs/logs.md turns into metrics with logs.rules (business events, job
// durations, failed logins, cache lookups), as real pino and winston print them, into the two files
// named on the command line. The Python side writes the same events with structlog.
"use strict";
const [pinoPath, winstonPath] = process.argv.slice(2);

async function main() {
  const pino = require("pino");
  const logger = pino(pino.destination({ dest: pinoPath, sync: true }));
  logger.info({ event_type: "order.created", amount: 49.9, orderId: "o-1" }, "business event");
  logger.info({ event_type: "order.created", amount: 10, orderId: "o-2" }, "business event");
  logger.info({ event_type: "user.signup" }, "business event");
  logger.info({ queue: "email", jobId: "j-1", duration_ms: 120 }, "job completed");
  logger.info({ queue: "email", jobId: "j-2", duration_ms: 2400 }, "job completed");
  logger.info({ queue: "images", jobId: "j-3", duration_ms: 35 }, "job completed");
  logger.info({ queue: "images", jobId: "j-4", duration_ms: "soon" }, "job completed");
  logger.warn({ reason: "bad_password", userId: 7 }, "login failed");
  logger.warn({ reason: "unknown_user", userId: 8 }, "login failed");
  logger.info({ reason: "bad_password" }, "login failed"); // info: not a failure the rule counts
  for (const result of ["hit", "hit", "hit", "miss"]) {
    logger.info({ cache: result, key: "user:1" }, "cache lookup");
  }

  const winston = require("winston");
  const out = require("fs").createWriteStream(winstonPath);
  const file = new winston.transports.Stream({ stream: out });
  const wlog = winston.createLogger({
    level: "info",
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [file],
  });
  wlog.info("business event", { event_type: "order.created", amount: 5.5 });
  wlog.info("job completed", { queue: "reports", duration_ms: 800 });
  wlog.warn("login failed", { reason: "locked" });
  wlog.warn("login failed", { reason: "sql' OR 1=1" }); // not in the allow-list: _other
  wlog.info("cache lookup", { cache: "miss" });
  // winston's transports finish after the logger: close the stream and wait until it is on disk
  await new Promise((resolve) => { wlog.on("finish", resolve); wlog.end(); });
  await new Promise((resolve) => { out.on("close", resolve); out.end(); });
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
