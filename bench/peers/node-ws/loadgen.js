// A second load generator for scripts/bench (BENCH_GENERATOR=node): the same
// measurement as the Rust bench (N receivers + 1 sender in one room, paced 128-byte
// messages, delivery latency on one clock), written against a different WebSocket
// client (Node's `ws`) and a different runtime, so a figure that depends on the
// generator shows up as a disagreement between the two.
//
//   node loadgen.js --url http://127.0.0.1:8787 --room R --receivers 100 --rate 200
//                   [--duration 10] [--warmup 2] [--size 128] [--raw]
//
// Receivers join (protocol v1 hello, or nothing with --raw), the room must then be
// quiet for 500 ms (joins drained), and the sender sends `rate` messages a second for
// warmup + duration seconds. Only messages sent inside the measured window count; the
// run waits at most 3 s after it for stragglers, like the Rust bench.
"use strict";
const WebSocket = require("ws");

function args() {
  const a = { duration: 10, warmup: 2, size: 128, receivers: 100, rate: 100, raw: false };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i++) {
    const k = v[i].replace(/^--/, "");
    if (k === "raw") a.raw = true;
    else a[k] = v[++i];
  }
  for (const k of ["duration", "warmup", "size", "receivers", "rate"]) a[k] = Number(a[k]);
  if (!a.url || !a.room) throw new Error("--url and --room are required");
  return a;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowUs = () => Number(process.hrtime.bigint() / 1000n);

async function main() {
  const a = args();
  const url = a.url.replace(/^http/, "ws").replace(/\/$/, "") + `/api/room/${a.room}/websocket`;
  const sockets = [];
  const latencies = [];
  let lastFrameAt = Date.now();
  let window = null; // [startUs, endUs] of the measured sends
  let delivered = 0;
  const t0 = Date.now();
  const open = (name, receiver) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false, headers: { Origin: a.url } });
      ws.on("error", reject);
      ws.on("open", () => {
        if (!a.raw) ws.send(JSON.stringify({ name }));
        resolve(ws);
      });
      ws.on("message", (data) => {
        lastFrameAt = Date.now();
        if (!receiver) return;
        const text = data.toString();
        const m = /\|t(\d+)\|/.exec(text);
        if (!m || !window) return;
        const sent = Number(m[1]);
        if (sent < window[0] || sent > window[1]) return;
        delivered++;
        latencies.push(nowUs() - sent);
      });
    });
  // Joins, 64 at a time as the Rust bench does.
  for (let i = 0; i < a.receivers; i += 64) {
    const batch = [];
    for (let j = i; j < Math.min(i + 64, a.receivers); j++) batch.push(open(`n${j}`, true));
    sockets.push(...(await Promise.all(batch)));
  }
  const sender = await open("sender", false);
  const joinedS = (Date.now() - t0) / 1000;
  for (let i = 0; i < 200 && Date.now() - lastFrameAt < 500; i++) await sleep(50);
  const settledS = (Date.now() - t0) / 1000 - joinedS;
  const total = a.rate * (a.warmup + a.duration);
  const start = nowUs();
  const measureFrom = start + a.warmup * 1e6;
  // Every message sent from measureFrom on counts (the sender stops by itself).
  window = [measureFrom, Infinity];
  let measured = 0;
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1e6) / a.rate;
    const wait = due - nowUs();
    if (wait > 1000) await sleep(wait / 1000);
    const t = Math.max(nowUs(), 0);
    if (t >= measureFrom) measured++;
    const head = `|t${t}|`;
    const body = head + "x".repeat(Math.max(0, a.size - head.length));
    sender.send(a.raw ? body : JSON.stringify({ message: body }));
  }
  const expected = measured * a.receivers;
  for (let i = 0; i < 60 && delivered < expected; i++) await sleep(50);
  latencies.sort((x, y) => x - y);
  const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] / 1000 : NaN);
  const loss = expected ? (100 * (expected - delivered)) / expected : 0;
  console.log(
    `# node ws generator: ${a.receivers} receivers + 1 sender, ${a.size} B messages, joined in ${joinedS.toFixed(2)} s, settled ${settledS.toFixed(2)} s later`,
  );
  console.log("msgs/s  target_deliv/s  deliveries/s  loss%    p50_ms   p99_ms");
  console.log(
    [a.rate, a.rate * a.receivers, Math.round(delivered / a.duration), loss.toFixed(2), pct(50).toFixed(2), pct(99).toFixed(2)].join("  "),
  );
  for (const ws of [...sockets, sender]) ws.terminate();
}

main().catch((e) => {
  console.error(`loadgen: ${e.message || e}`);
  process.exit(1);
});
