// Writes real log lines from pino, pino-http, winston and bunyan into the files named on the command
// line, so the sidecar's parser is tested on what these libraries actually print.
"use strict";
const fs = require("fs");
const http = require("http");
const [pinoPath, winstonPath, bunyanPath] = process.argv.slice(2);

function boom() {
  const err = new TypeError("cannot read properties of undefined (reading 'id')");
  return err;
}

async function main() {
  // pino: one info line with a request id, one error with err, then pino-http access lines.
  const pino = require("pino");
  const dest = pino.destination({ dest: pinoPath, sync: true });
  const logger = pino(dest);
  logger.info({ reqId: "pino-req-1" }, "user loaded");
  logger.error({ err: boom(), reqId: "pino-req-1" }, "handler failed");
  const pinoHttp = require("pino-http")({ logger, genReqId: (req) => req.headers["x-request-id"] || "generated" });
  const server = http.createServer((req, res) => {
    pinoHttp(req, res);
    res.statusCode = req.url.startsWith("/missing") ? 404 : 200;
    res.end("ok");
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = server.address().port;
  for (const [path, id] of [["/users/123?expand=true", "pino-req-2"], ["/missing/9", "pino-req-3"]]) {
    await new Promise((resolve, reject) => {
      http.get({ host: "127.0.0.1", port, path, headers: { "x-request-id": id } }, (res) => {
        res.resume();
        res.on("end", resolve);
      }).on("error", reject);
    });
  }
  await new Promise((resolve) => server.close(resolve));

  // winston: JSON with timestamp, and an error logged with its stack.
  const winston = require("winston");
  const wlog = winston.createLogger({
    level: "silly",
    format: winston.format.combine(winston.format.errors({ stack: true }), winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.File({ filename: winstonPath })],
  });
  wlog.info("order created", { requestId: "winston-req-1", orderId: 7 });
  wlog.warn("slow query", { requestId: "winston-req-1" });
  wlog.error(boom());
  wlog.http("GET /health 200");
  await new Promise((resolve) => { wlog.on("finish", resolve); wlog.end(); });

  // bunyan: an info line and an error with err (its standard serializer).
  const bunyan = require("bunyan");
  const blog = bunyan.createLogger({ name: "api", streams: [{ path: bunyanPath }], serializers: bunyan.stdSerializers });
  blog.info({ req_id: "bunyan-req-1" }, "listening");
  blog.error({ err: boom(), req_id: "bunyan-req-1" }, "request failed");
  await new Promise((resolve) => setTimeout(resolve, 100));
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
