// Peer for scripts/bench: the minimal JavaScript Durable Object broadcast the baselines
// note measured. One object per path (the path is the room); it takes sockets with the
// hibernation API and sends every text it gets to every socket of the object, once per
// socket, as it came. No protocol, no history, no limits: the floor a chat Durable
// Object is compared against.

export class Broadcast {
  constructor(ctx) {
    this.ctx = ctx;
  }

  async fetch() {
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server);
    return new Response(null, { status: 101, webSocket: client });
  }

  webSocketMessage(_ws, message) {
    if (typeof message !== "string") return;
    for (const peer of this.ctx.getWebSockets()) {
      try {
        peer.send(message);
      } catch {
        // A socket closing under us; its close handler cleans up.
      }
    }
  }

  webSocketClose(ws, code) {
    // 1005 and 1006 are not codes a close frame may carry.
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, "bye");
    } catch {
      // Already closed.
    }
  }

  webSocketError() {}
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") return new Response("ok");
    if (request.headers.get("Upgrade") !== "websocket") {
      return new Response("not found", { status: 404 });
    }
    return env.ROOMS.get(env.ROOMS.idFromName(url.pathname)).fetch(request);
  },
};
