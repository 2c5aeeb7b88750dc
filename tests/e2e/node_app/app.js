// The app in the pod, as deploy/kubernetes/deployment.yaml runs it: Node's http server answering
// "ok" on /healthz and "hello" elsewhere (/work?ms=N answers after N milliseconds, for requests still
// in flight when the app is told to stop). Like a default Node app it installs no SIGTERM handler,
// so SIGTERM ends the process at once, with whatever it was serving.
// Usage: node app.js PORT   (listens on 127.0.0.1)
"use strict";
const http = require("http");

const port = Number(process.argv[2] || 3000);
const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://app");
  if (url.pathname === "/healthz") {
    res.end("ok");
    return;
  }
  const ms = Math.min(Number(url.searchParams.get("ms")) || 0, 60000);
  if (ms > 0) {
    setTimeout(() => res.end("hello"), ms);
  } else {
    res.end("hello");
  }
});
server.listen(port, "127.0.0.1", () => console.log(`listening on 127.0.0.1:${port}`));
