// Peer for scripts/bench: the minimal Node `ws` broadcast the baselines note measured.
// Every text a socket sends goes to every socket connected on the same path (the path
// is the room, so the idle bench can spread sockets over rooms as it does for ours).
// No protocol, no history, no limits: the floor a chat server is compared against.
//
//   node server.js PORT
"use strict";
const http = require("http");
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2] || 8080);
const rooms = new Map();

const server = http.createServer((req, res) => {
  // scripts/bench waits for this before it starts the load.
  res.writeHead(req.url === "/healthz" ? 200 : 404, { "content-type": "text/plain" });
  res.end(req.url === "/healthz" ? "ok" : "not found");
});
// Same stance as our servers: no compression, and a bounded message size.
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 64 * 1024 });

wss.on("connection", (ws, req) => {
  const path = req.url || "/";
  let room = rooms.get(path);
  if (!room) {
    room = new Set();
    rooms.set(path, room);
  }
  room.add(ws);
  ws.on("message", (data, isBinary) => {
    if (isBinary) return;
    // One buffer for every recipient, as ours encodes a broadcast once.
    for (const peer of room) {
      if (peer.readyState === 1) peer.send(data, { binary: false });
    }
  });
  ws.on("close", () => {
    room.delete(ws);
    if (room.size === 0) rooms.delete(path);
  });
  ws.on("error", () => {});
});

server.listen(port, "127.0.0.1");
