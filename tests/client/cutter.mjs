// A TCP proxy in front of a backend whose connections a test can break the way a network
// does: cut outright, cut in the middle of a frame, or stall. Used by the client-module
// tests (tests/client) and the browser test (tests/browser).
//
// It drops clients' permessage-deflate offers (the Sec-WebSocket-Extensions header of
// the upgrade request), so that the server's frames cross it as plain text a test can
// read: wrangler dev's own proxies would accept the offer, the local runner never does.
import net from 'node:net';

/**
 * Starts a proxy to the http `base` on a free loopback port. Every connection is a pair
 * (the client's socket, the upstream one); the controls act on the pairs open now.
 */
export async function startCutter(base) {
  const target = new URL(base);
  const port = Number(target.port || 80);
  const pairs = new Set();
  let down = false;
  let cutNextUpstreamChunk = false;

  const server = net.createServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = net.connect(port, target.hostname);
    const pair = {
      client,
      upstream,
      muted: false, // server → client bytes dropped
      stalled: null, // client → server bytes held here instead of forwarded
      abandoned: false, // the client side is gone, the server side kept open
      head: Buffer.alloc(0), // the upgrade request until its end, then null
    };
    const drop = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    pair.drop = drop;
    pairs.add(pair);
    // An abandoned pair (see abandonStalled) loses its client side only.
    const clientGone = () => (pair.abandoned ? client.destroy() : drop());
    client.on('error', clientGone);
    client.on('close', clientGone);
    upstream.on('error', drop);
    upstream.on('close', drop);
    client.on('data', (data) => {
      let chunk = data;
      if (pair.head) {
        const head = Buffer.concat([pair.head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0 && head.length < 64 * 1024) {
          pair.head = head;
          return;
        }
        pair.head = null;
        const cut = end < 0 ? 0 : end + 4;
        const request = head.subarray(0, cut).toString('latin1')
          .split('\r\n')
          .filter((line) => !/^sec-websocket-extensions:/i.test(line))
          .join('\r\n');
        chunk = Buffer.concat([Buffer.from(request, 'latin1'), head.subarray(cut)]);
      }
      if (pair.stalled) {
        pair.stalled.push(chunk);
      } else if (cutNextUpstreamChunk) {
        // Half of what the client just wrote (one WebSocket frame, as clients write
        // each frame at once) reaches the server, then the line goes.
        cutNextUpstreamChunk = false;
        upstream.write(chunk.subarray(0, Math.max(1, chunk.length >> 1)), () => drop());
      } else {
        upstream.write(chunk);
      }
    });
    upstream.on('data', (chunk) => {
      if (!pair.muted && !pair.stalled && !pair.abandoned) client.write(chunk);
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });

  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** Connections open now. */
    get open() {
      return pairs.size;
    },
    /** Breaks every connection and refuses new ones until `restore()`. */
    cut() {
      down = true;
      for (const p of [...pairs]) p.drop();
    },
    restore() {
      down = false;
    },
    /** The server's answers on the open connections are lost from now on (the client's
     * frames still arrive). */
    mute() {
      for (const p of pairs) p.muted = true;
    },
    /** The next chunk a client writes arrives half, and its connection breaks. */
    cutMidFrame() {
      cutNextUpstreamChunk = true;
    },
    /** Bytes held back by stalled connections. */
    get held() {
      let n = 0;
      for (const p of pairs) for (const chunk of p.stalled || []) n += chunk.length;
      return n;
    },
    /** Open connections stall both ways: what clients write is held back, not sent. */
    stall() {
      for (const p of pairs) if (!p.stalled) p.stalled = [];
    },
    /** The client side of the stalled connections breaks; their server side stays
     * open, still holding what the client wrote. Returns `release({ send, until })`,
     * which delivers that to the server late, then writes `send` as one more text frame
     * of the client's, waits (bounded) until the server's answers on that connection
     * contain `until`, and closes it. The server answers a connection's frames in order,
     * so the answer to `send` means the held frames were handled. */
    abandonStalled() {
      const stalled = [...pairs].filter((p) => p.stalled);
      for (const p of stalled) {
        p.abandoned = true;
        p.client.destroy();
      }
      return async ({ send, until }, timeoutMs = 15_000) => {
        for (const p of stalled) {
          let answers = '';
          const answered = new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`no answer containing ${until}`)), timeoutMs);
            p.upstream.on('data', (chunk) => {
              answers += chunk.toString('latin1');
              if (answers.includes(until)) {
                clearTimeout(timer);
                resolve();
              }
            });
          });
          for (const chunk of p.stalled) p.upstream.write(chunk);
          p.stalled = null;
          p.upstream.write(clientTextFrame(send));
          await answered;
          p.drop();
        }
        return stalled.length;
      };
    },
    close() {
      this.cut();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A client's text frame (RFC 6455: masked; a zero mask leaves the payload as it is),
 * for payloads under 126 bytes. */
function clientTextFrame(text) {
  const payload = Buffer.from(text, 'utf8');
  if (payload.length > 125) throw new Error('clientTextFrame: payload too long');
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length, 0, 0, 0, 0]), payload]);
}
