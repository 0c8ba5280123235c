// The logic of static/edge-chat.js, against a fake WebSocket and a fake clock: no
// server, no network, no waiting. Run: node --test tests/client/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import {
  EdgeChat, RefusedError, ClosedError, DEFAULTS, FINAL_CLOSE_CODES, socketUrl,
} from '../../static/edge-chat.js';

// ---- fakes ------------------------------------------------------------------------

/** A WebSocket class whose sockets the test drives; `sockets` lists them in order. */
function fakeWebSocket() {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      sockets.push(this);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error('not open');
      const frame = JSON.parse(data);
      // Typing frames go out without one: their only answer would be an `ok` that
      // settles nothing (docs/protocol.md, "Typing indicators").
      if (this.sent.length > 0 && !('typing' in frame)) {
        // Every request carries an id by the protocol's rule, unique on its socket.
        assert.match(frame.id, /^[A-Za-z0-9_-]{1,64}$/);
        assert.ok(!this.sent.some((f) => f.id === frame.id), `id ${frame.id} used twice`);
      }
      this.sent.push(frame);
    }
    close(code, reason) {
      this.readyState = 3;
      this.closedWith = { code, reason };
    }
    // ---- driven by the test ----
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    receive(frame) {
      this.onmessage?.({ data: typeof frame === 'string' ? frame : JSON.stringify(frame) });
    }
    drop(code = 1006, reason = '') {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
    /** Frames sent after the hello, without their request ids (see `idAt`). */
    get frames() {
      return this.sent.slice(1).map(({ id, ...frame }) => frame);
    }
    /** The request id of frame `i` after the hello. */
    idAt(i) {
      return this.sent[i + 1].id;
    }
    /** The server's answer to frame `i`: `frame` with its `re`. */
    answer(i, frame) {
      this.receive({ ...frame, re: this.idAt(i) });
    }
  }
  return { FakeSocket, sockets };
}

/** Timers run only when the test advances time. */
function fakeClock() {
  let now = 1_000_000;
  let nextId = 1;
  const timers = new Map();
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = nextId++;
      timers.set(id, { at: now + ms, fn });
      return id;
    },
    clearTimeout(id) {
      timers.delete(id);
    },
    /** Runs every timer due within `ms`, in time order. */
    advance(ms) {
      const end = now + ms;
      for (let guard = 0; guard < 1000; guard++) {
        let next = null;
        for (const [id, t] of timers) if (t.at <= end && (!next || t.at < next[1].at)) next = [id, t];
        if (!next) break;
        timers.delete(next[0]);
        now = next[1].at;
        next[1].fn();
      }
      now = end;
    },
  };
}

const EPOCH = 'epoch-a';
const msg = (seq, extra = {}) => ({ name: 'bob', message: `m${seq}`, timestamp: 1000 + seq, seq, ...extra });

/** A chat with fakes, and every event it emits recorded as [type, detail]. */
async function setup(options = {}) {
  const { FakeSocket, sockets } = fakeWebSocket();
  const clock = fakeClock();
  const chat = new EdgeChat({
    base: 'http://chat.test:8787', room: 'lobby', name: 'ana', WebSocket: FakeSocket, clock,
    random: () => 0.5, ...options,
  });
  const events = [];
  for (const type of ['ready', 'message', 'joined', 'quit', 'roster', 'deleted', 'error', 'state', 'reset', 'memberpage', 'unlisted', 'typing', 'edited', 'reactions']) {
    chat.addEventListener(type, (e) => events.push([type, e.detail]));
  }
  await tick(); // the constructor connects in a microtask
  return { chat, sockets, clock, events, last: () => sockets[sockets.length - 1] };
}

/** The server side of a join: open, roster, backlog, own joined, ready. */
function serveJoin(sock, { epoch = EPOCH, seq = 0, recovered = false, backlog = [] } = {}) {
  if (sock.readyState !== 1) sock.open();
  sock.receive({ roster: [{ name: 'bob' }] });
  for (const m of backlog) sock.receive(m);
  sock.receive({ joined: 'ana' });
  sock.receive({ ready: true, epoch, seq, recovered, v: 2 });
}

const of = (events, type) => events.filter(([t]) => t === type).map(([, d]) => d);
const seqs = (events) => of(events, 'message').map((m) => m.seq);

/** Watches a promise from the start, so a rejection is never unhandled. */
function track(p) {
  const t = { state: 'pending' };
  p.then((value) => Object.assign(t, { state: 'resolved', value }),
    (error) => Object.assign(t, { state: 'rejected', error }));
  return t;
}

/** How a tracked promise stands once pending callbacks have run. */
async function settled(t) {
  await tick();
  return t;
}

// ---- tests --------------------------------------------------------------------------

test('the socket URL and the v2 hello', async () => {
  assert.equal(socketUrl('http://h:1', 'lobby'), 'ws://h:1/api/room/lobby/websocket');
  assert.equal(socketUrl('https://h/chat/', 'r'), 'wss://h/chat/api/room/r/websocket');
  assert.equal(socketUrl('wss://h', 'r'), 'wss://h/api/room/r/websocket');
  assert.throws(() => socketUrl('ftp://h', 'r'), TypeError);
  const { sockets, events } = await setup({ token: 'jwt.x.y' });
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].url, 'ws://chat.test:8787/api/room/lobby/websocket');
  assert.deepEqual(of(events, 'state'), [{ state: 'connecting' }]);
  sockets[0].open();
  assert.deepEqual(sockets[0].sent, [{ name: 'ana', v: 2, batch: true, token: 'jwt.x.y' }]);
});

test('events: roster, joined, ready, messages in order, quit, deleted, error', async () => {
  const { sockets, events } = await setup();
  serveJoin(sockets[0], { seq: 2, backlog: [msg(1), msg(2)] });
  sockets[0].receive({ quit: 'bob' });
  sockets[0].receive({ deleted: 2 });
  sockets[0].receive({ error: 'Something.' });
  sockets[0].receive({ some_future_frame: 1 });
  assert.deepEqual(events.map(([t]) => t), [
    'state', 'roster', 'joined', 'ready', 'message', 'message', 'state', 'quit', 'deleted', 'error',
  ]);
  assert.deepEqual(of(events, 'roster'), [{ roster: [{ name: 'bob' }], count: 1, more: false }]);
  assert.deepEqual(of(events, 'message'), [msg(1), msg(2)]);
  assert.equal(of(events, 'ready')[0].recovered, false);
  assert.deepEqual(of(events, 'state').at(-1), { state: 'live' });
  assert.deepEqual(of(events, 'deleted'), [{ seq: 2 }]);
  assert.deepEqual(of(events, 'error'), [{ message: 'Something.', code: null, re: null }]);
});

test('a batch is unwrapped into its frames, in order', async () => {
  const { sockets, events } = await setup();
  serveJoin(sockets[0]);
  sockets[0].receive({ batch: [msg(1), { joined: 'cy' }, msg(2), null, 7] });
  assert.deepEqual(seqs(events), [1, 2]);
  assert.deepEqual(of(events, 'joined').map((d) => d.name), ['ana', 'cy']);
});

test('backoff: full jitter under a ceiling that doubles up to 10 s', async () => {
  for (const r of [0, 0.5, 0.999999]) {
    const { chat } = await setup({ random: () => r });
    const ceilings = [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000];
    ceilings.forEach((ceiling, attempt) => {
      const d = chat.backoffDelay(attempt);
      assert.ok(d >= 0 && d < ceiling, `attempt ${attempt}: ${d} within [0, ${ceiling})`);
      assert.equal(d, Math.floor(r * ceiling));
    });
    assert.ok(chat.backoffDelay(1000) < DEFAULTS.backoffMaxMs, 'no overflow for large attempts');
    chat.close();
  }
});

test('backoff grows while joins do not last, and starts over after a stable connection', async () => {
  const { sockets, clock, events, last } = await setup({ random: () => 0.999999 });
  const delays = () => of(events, 'state').filter((s) => s.state === 'reconnecting' && 'delay' in s).map((s) => s.delay);
  // A server that accepts the join and drops us at once, five times.
  for (let i = 0; i < 5; i++) {
    serveJoin(last());
    last().drop(1006);
    clock.advance(10_000);
  }
  assert.deepEqual(delays(), [499, 999, 1999, 3999, 7999], 'not reset by a join that did not last');
  // Never joined at all: still growing, capped.
  last().drop(1006);
  clock.advance(10_000);
  assert.equal(delays().at(-1), 9999);
  // A connection that stays up for stableMs: the next delay is the shortest again.
  serveJoin(last());
  clock.advance(DEFAULTS.stableMs);
  last().drop(1006);
  assert.equal(delays().at(-1), 499);
  assert.equal(sockets.length, 7);
});

test('resume: the reconnect asks for what follows the last seq delivered', async () => {
  const { sockets, clock, events } = await setup();
  serveJoin(sockets[0], { seq: 3, backlog: [msg(1), msg(2), msg(3)] });
  sockets[0].drop(1006);
  assert.equal(of(events, 'state').at(-1).state, 'reconnecting');
  clock.advance(10_000);
  assert.equal(sockets.length, 2);
  sockets[1].open();
  assert.deepEqual(sockets[1].sent[0], { name: 'ana', v: 2, batch: true, resume: { epoch: EPOCH, seq: 3 } });
  sockets[1].receive({ roster: [] });
  sockets[1].receive(msg(4));
  sockets[1].receive(msg(5));
  sockets[1].receive({ joined: 'ana' });
  sockets[1].receive({ ready: true, epoch: EPOCH, seq: 5, recovered: true, v: 2 });
  assert.deepEqual(seqs(events), [1, 2, 3, 4, 5]);
  const ready = of(events, 'ready').at(-1);
  assert.deepEqual([ready.recovered, ready.gap, ready.reset], [true, false, false]);
  assert.equal(of(events, 'reset').length, 0);
  assert.deepEqual(of(events, 'state').map((s) => s.state), ['connecting', 'live', 'reconnecting', 'reconnecting', 'live']);
});

test('dedupe by seq: a message already delivered is not delivered again', async () => {
  const { sockets, clock, events } = await setup();
  serveJoin(sockets[0], { seq: 3, backlog: [msg(1), msg(2), msg(3)] });
  sockets[0].receive(msg(3));
  sockets[0].drop(1006);
  clock.advance(10_000);
  // Not recovered: the server sends its last messages, some already seen, and a gap.
  serveJoin(sockets[1], { seq: 9, backlog: [msg(2), msg(3), msg(8), msg(9)] });
  sockets[1].receive(msg(9));
  assert.deepEqual(seqs(events), [1, 2, 3, 8, 9]);
  assert.equal(of(events, 'ready').at(-1).gap, true, 'messages 4 to 7 may be missing');
});

test('a reset: a new epoch, or a newest seq below the last one delivered', async () => {
  for (const [epoch, seq] of [['epoch-b', 9], [EPOCH, 1]]) {
    const { chat, sockets, clock, events } = await setup();
    serveJoin(sockets[0], { seq: 4, backlog: [msg(3), msg(4)] });
    const page = track(chat.history(3, 10)); // in flight when the room resets
    sockets[0].drop(1006);
    clock.advance(10_000);
    serveJoin(sockets[1], { epoch, seq, backlog: [msg(1)] });
    const resets = of(events, 'reset');
    assert.deepEqual(resets, [{ epoch, previousEpoch: EPOCH, seq, previousSeq: 4 }]);
    const types = events.map(([t]) => t);
    assert.ok(types.lastIndexOf('reset') < types.lastIndexOf('ready'), 'reset comes before ready');
    assert.equal(of(events, 'ready').at(-1).reset, true);
    assert.deepEqual(seqs(events), [3, 4, 1], 'the new history is delivered from its start');
    assert.equal(chat.seq, 1);
    assert.ok((await settled(page)).error instanceof RefusedError, 'a page of the old history is void');
    sockets[1].drop(1006);
    clock.advance(10_000);
    sockets[2].open();
    assert.deepEqual(sockets[2].sent[0].resume, { epoch, seq: 1 });
    chat.close();
  }
});

test('a send while disconnected waits for the join, then goes out once', async () => {
  const { chat, sockets, events } = await setup();
  const p = track(chat.send('early'));
  assert.equal(chat.pending, 1);
  sockets[0].open();
  assert.deepEqual(sockets[0].frames, [], 'nothing before ready');
  serveJoin(sockets[0]);
  const [frame] = sockets[0].frames;
  assert.equal(frame.message, 'early');
  assert.match(frame.cid, /^[A-Za-z0-9_-]{1,64}$/);
  const stored = { name: 'ana', message: 'early', timestamp: 5, seq: 1, cid: frame.cid };
  sockets[0].receive(stored);
  assert.deepEqual((await settled(p)).value, stored);
  assert.deepEqual(of(events, 'message'), [stored]);
  assert.equal(chat.pending, 0);
});

test('a send lost with its connection is sent again with the same cid and resolved once', async () => {
  const { chat, sockets, clock, events } = await setup();
  serveJoin(sockets[0]);
  const first = track(chat.send('one'));
  const second = track(chat.send('two'));
  const [f1, f2] = sockets[0].frames;
  assert.notEqual(f1.cid, f2.cid, 'a cid per send');
  // "one" was stored and echoed; "two" may or may not have been: the line drops.
  const one = { name: 'ana', message: 'one', timestamp: 5, seq: 1, cid: f1.cid };
  sockets[0].receive(one);
  sockets[0].drop(1006);
  const third = track(chat.send('three')); // while disconnected
  clock.advance(10_000);
  serveJoin(sockets[1], { seq: 1, recovered: true });
  assert.deepEqual(sockets[1].frames, [
    { message: 'two', cid: f2.cid },
    { message: 'three', cid: sockets[1].frames[1].cid },
  ], 'the unsettled ones, in order, "two" with its first cid');
  // "two" had been stored (seq 2): the server answers the repeat with the original.
  const two = { name: 'ana', message: 'two', timestamp: 6, seq: 2, cid: f2.cid };
  const three = { name: 'ana', message: 'three', timestamp: 7, seq: 3, cid: sockets[1].frames[1].cid };
  sockets[1].receive(two);
  sockets[1].receive(three);
  sockets[1].receive(two); // a stray repeat changes nothing
  assert.deepEqual((await settled(first)).value, one);
  assert.deepEqual((await settled(second)).value, two);
  assert.deepEqual((await settled(third)).value, three);
  assert.deepEqual(seqs(events), [1, 2, 3], 'each delivered once');
  assert.equal(chat.pending, 0);
});

test('a send whose echo comes in the resumed backlog is settled there, not sent again', async () => {
  const { chat, sockets, clock } = await setup();
  serveJoin(sockets[0]);
  const p = track(chat.send('maybe'));
  const { cid } = sockets[0].frames[0];
  sockets[0].drop(1006);
  clock.advance(10_000);
  const stored = { name: 'ana', message: 'maybe', timestamp: 9, seq: 1, cid };
  serveJoin(sockets[1], { seq: 1, recovered: true, backlog: [stored] });
  assert.deepEqual(sockets[1].frames, [], 'not sent again');
  assert.deepEqual((await settled(p)).value, stored);
});

test('a repeat answered with the tombstone of its message rejects; the next send still settles', async () => {
  const { chat, sockets, clock, events } = await setup();
  serveJoin(sockets[0]);
  const gone = track(chat.send('deleted meanwhile'));
  const { cid } = sockets[0].frames[0];
  sockets[0].drop(1006);
  clock.advance(10_000);
  // Stored as seq 1 and deleted by a moderator before the repeat: the resumed gap holds
  // its tombstone, and the repeat is answered with it, carrying the cid.
  serveJoin(sockets[1], { seq: 1, recovered: true, backlog: [{ deleted: 1 }] });
  assert.deepEqual(sockets[1].frames, [{ message: 'deleted meanwhile', cid }], 'sent again');
  const next = track(chat.send('next'));
  assert.equal(sockets[1].frames.length, 2);
  sockets[1].receive({ deleted: 1, cid });
  const err = (await settled(gone)).error;
  assert.ok(err instanceof RefusedError);
  assert.equal(err.message, 'That message was deleted by a moderator.');
  // A tombstone with another cid, or none, settles nothing.
  sockets[1].receive({ deleted: 1, cid: 'c-someone-else' });
  assert.equal((await settled(next)).state, 'pending');
  const echo = { name: 'ana', message: 'next', timestamp: 8, seq: 2, cid: sockets[1].frames[1].cid };
  sockets[1].receive(echo);
  assert.deepEqual((await settled(next)).value, echo);
  assert.deepEqual(of(events, 'deleted'), [{ seq: 1 }, { seq: 1 }, { seq: 1 }]);
  assert.deepEqual(seqs(events), [2]);
  assert.equal(chat.pending, 0);
});

test('a refused message rejects with the server sentence and code; the others go on', async () => {
  const { chat, sockets, events } = await setup();
  serveJoin(sockets[0]);
  const ok = track(chat.send('fine'));
  const refused = track(chat.send('too fast'));
  const after = track(chat.send('later'));
  const [a, , c] = sockets[0].frames;
  sockets[0].receive({ name: 'ana', message: 'fine', timestamp: 1, seq: 1, cid: a.cid });
  sockets[0].answer(0, { ok: true, seq: 1 });
  // An error without `re` answers none of ours: an event, nothing settled.
  sockets[0].receive({ error: 'Something else.', code: 'internal' });
  assert.equal((await settled(refused)).state, 'pending');
  sockets[0].answer(1, { error: 'Rate limited; slow down.', code: 'rate_limited' });
  sockets[0].receive({ name: 'ana', message: 'later', timestamp: 2, seq: 2, cid: c.cid });
  sockets[0].answer(2, { ok: true, seq: 2 });
  assert.equal((await settled(ok)).value.seq, 1);
  const err = (await settled(refused)).error;
  assert.ok(err instanceof RefusedError);
  assert.equal(err.message, 'Rate limited; slow down.');
  assert.equal(err.code, 'rate_limited');
  assert.equal((await settled(after)).value.seq, 2);
  assert.deepEqual(of(events, 'error'), [
    { message: 'Something else.', code: 'internal', re: null },
    { message: 'Rate limited; slow down.', code: 'rate_limited', re: sockets[0].idAt(1) },
  ]);
  assert.equal(chat.pending, 0);
});

test('history: pages in order with sends, refusals, and waiting for a join', async () => {
  const { chat, sockets, clock } = await setup();
  const early = track(chat.history()); // before any join
  serveJoin(sockets[0], { seq: 50 });
  assert.deepEqual(sockets[0].frames, [{ history: {} }]);
  sockets[0].answer(0, { history: [msg(49), msg(50)], before: 51, more: true });
  assert.deepEqual((await settled(early)).value, { messages: [msg(49), msg(50)], more: true, before: 51 });

  const send = track(chat.send('x'));
  const page = track(chat.history(49, 2));
  const bad = track(chat.history(0, 0));
  assert.deepEqual(sockets[0].frames.slice(1).map((f) => f.history ?? f.message), ['x', { before: 49, limit: 2 }, { before: 0, limit: 0 }]);
  // Each settles by its own answer, in whatever order they come.
  sockets[0].answer(3, { error: 'History "limit" must be a whole number from 1 to history_page_max (see GET /api/limits).', code: 'history_limit' });
  assert.equal((await settled(page)).state, 'pending');
  sockets[0].answer(2, { history: [msg(47), msg(48)], before: 49, more: false });
  sockets[0].receive({ name: 'ana', message: 'x', timestamp: 1, seq: 51, cid: sockets[0].frames[1].cid });
  assert.equal((await settled(send)).value.seq, 51);
  assert.deepEqual((await settled(page)).value.messages.map((m) => m.seq), [47, 48]);
  assert.equal((await settled(bad)).error.code, 'history_limit');
  // A page for no request of ours (an unknown `re`, or none) settles nothing.
  const more = track(chat.history(47, 1));
  sockets[0].receive({ history: [], before: 47, more: true, re: 'q-not-ours' });
  sockets[0].receive({ history: [], before: 47, more: true });
  assert.equal((await settled(more)).state, 'pending');
  sockets[0].answer(4, { history: [msg(46)], before: 47, more: true });
  assert.deepEqual((await settled(more)).value.messages, [msg(46)]);

  // Lost with the connection: asked again after the next join.
  const lost = track(chat.history(47, 5));
  sockets[0].drop(1006);
  clock.advance(10_000);
  serveJoin(sockets[1], { seq: 51, recovered: true });
  assert.deepEqual(sockets[1].frames, [{ history: { before: 47, limit: 5 } }]);
  sockets[1].answer(0, { history: [], before: 47, more: false });
  assert.deepEqual((await settled(lost)).value, { messages: [], more: false, before: 47 });
});

test('a whole roster: members() resolves at once, with this session', async () => {
  const { chat, sockets } = await setup();
  const early = track(chat.members()); // before any join: waits for it
  serveJoin(sockets[0]);
  assert.deepEqual((await settled(early)).value, [{ name: 'ana' }, { name: 'bob' }]);
  assert.equal(chat.memberCount, 2);
  assert.equal(chat.membersComplete, true);
  assert.deepEqual(sockets[0].frames, []); // nothing asked
  assert.deepEqual((await chat.moreMembers()), { members: [], count: 2, more: false });
});

test('a paged roster: members() pages to the end, counting quits, unlisted and joins', async () => {
  const { chat, sockets, events } = await setup();
  const s = sockets[0];
  s.open();
  // Four others: bob, al, al, cy; the first page lists two.
  s.receive({ roster: [{ name: 'bob' }, { name: 'al', user: 'u1' }], count: 4, next: '2' });
  s.receive({ joined: 'ana' });
  s.receive({ ready: true, epoch: EPOCH, seq: 0, recovered: false, v: 2 });
  assert.deepEqual(of(events, 'roster'), [{ roster: [{ name: 'bob' }, { name: 'al', user: 'u1' }], count: 4, more: true }]);
  assert.equal(chat.memberCount, 5);
  assert.equal(chat.membersComplete, false);
  const all = track(chat.members());
  assert.deepEqual(s.frames, [{ members: { after: '2' } }]);
  // The second al, not listed yet, leaves: its quit, then unlisted. zed joins.
  s.receive({ quit: 'al' });
  s.receive({ members: { unlisted: 'al' } });
  s.receive({ joined: 'zed' });
  assert.equal(chat.memberCount, 5);
  assert.equal((await settled(all)).state, 'pending');
  s.answer(0, { members: { page: [{ name: 'cy' }], count: 4, next: '4' } });
  assert.deepEqual(s.frames.slice(1), [{ members: { after: '4' } }]); // one at a time
  s.answer(1, { members: { page: [], count: 4, next: null } });
  const list = (await settled(all)).value;
  assert.deepEqual(list.map((e) => e.name), ['al', 'ana', 'bob', 'cy', 'zed']);
  assert.deepEqual(list[0], { name: 'al', user: 'u1' });
  assert.equal(chat.memberCount, 5);
  assert.equal(chat.membersComplete, true);
  assert.deepEqual(of(events, 'unlisted'), [{ name: 'al' }]);
  assert.equal(of(events, 'memberpage').length, 2);
});

test('moreMembers() fetches one page; a refused member request rejects its callers', async () => {
  const { chat, sockets, clock } = await setup();
  const s = sockets[0];
  s.open();
  s.receive({ roster: [{ name: 'a' }], count: 3, next: '1' });
  s.receive({ joined: 'ana' });
  s.receive({ ready: true, epoch: EPOCH, seq: 0, recovered: false, v: 2 });
  const one = track(chat.moreMembers());
  const send = track(chat.send('hi'));
  assert.deepEqual(s.frames.map((f) => f.members ?? f.message), [{ after: '1' }, 'hi']);
  s.answer(0, { members: { page: [{ name: 'b' }], count: 3, next: '2' } });
  assert.deepEqual((await settled(one)).value, { members: [{ name: 'b' }], count: 4, more: true });
  s.receive({ name: 'ana', message: 'hi', timestamp: 1, seq: 1, cid: s.frames[1].cid });
  assert.equal((await settled(send)).value.seq, 1);
  // A refusal (say the rate limit) answers the member request: its callers reject.
  const all = track(chat.members());
  s.answer(2, { error: 'Rate limited; slow down.', code: 'rate_limited' });
  assert.equal((await settled(all)).error.code, 'rate_limited');
  // Lost with the connection: the next join's roster is paged instead.
  const again = track(chat.members());
  assert.deepEqual(s.frames.at(-1), { members: { after: '2' } });
  s.drop(1006);
  clock.advance(10_000);
  const s2 = sockets[1];
  s2.open();
  s2.receive({ roster: [{ name: 'a' }, { name: 'b' }], count: 3, next: '2' });
  s2.receive({ joined: 'ana' });
  s2.receive({ ready: true, epoch: EPOCH, seq: 1, recovered: true, v: 2 });
  assert.deepEqual(s2.frames, [{ members: { after: '2' } }]);
  s2.answer(0, { members: { page: [{ name: 'c' }], count: 3, next: null } });
  assert.deepEqual((await settled(again)).value.map((e) => e.name), ['a', 'ana', 'b', 'c']);
});

test('no reconnect after 1008 or 4001: everything unsettled is rejected', async () => {
  assert.deepEqual(FINAL_CLOSE_CODES, [1008, 4001]);
  for (const [code, reason] of [[1008, 'Rate limit exceeded repeatedly'], [4001, 'Kicked']]) {
    const { chat, sockets, clock, events } = await setup();
    serveJoin(sockets[0]);
    const p = track(chat.send('pending'));
    const h = track(chat.history());
    sockets[0].drop(code, reason);
    clock.advance(60_000);
    assert.equal(sockets.length, 1, `no reconnect after ${code}`);
    assert.deepEqual(of(events, 'state').at(-1), { state: 'closed', code, reason, error: '', joining: false });
    for (const r of [await settled(p), await settled(h)]) {
      assert.ok(r.error instanceof ClosedError);
      assert.equal(r.error.code, code);
    }
    assert.equal(chat.state, 'closed');
  }
});

test('a refused hello closes for good and says why', async () => {
  const { sockets, clock, events } = await setup();
  sockets[0].open();
  sockets[0].receive({ error: 'Name is too long.' });
  sockets[0].drop(1008, 'Invalid hello');
  clock.advance(60_000);
  assert.equal(sockets.length, 1);
  assert.deepEqual(of(events, 'state').at(-1), {
    state: 'closed', code: 1008, reason: 'Invalid hello', error: 'Name is too long.', joining: true,
  });
});

test('1009: the largest unanswered send is refused, the others are sent again', async () => {
  const { chat, sockets, clock } = await setup();
  serveJoin(sockets[0]);
  const small = track(chat.send('small'));
  const huge = track(chat.send('h'.repeat(5000)));
  sockets[0].drop(1009, 'Message too big');
  const err = (await settled(huge)).error;
  assert.ok(err instanceof RefusedError);
  clock.advance(10_000);
  serveJoin(sockets[1], { recovered: true });
  assert.deepEqual(sockets[1].frames.map((f) => f.message), ['small']);
  sockets[1].receive({ name: 'ana', message: 'small', timestamp: 1, seq: 1, cid: sockets[1].frames[0].cid });
  assert.equal((await settled(small)).value.seq, 1);
});

test('a join that never completes is abandoned and retried', async () => {
  const { sockets, clock } = await setup();
  sockets[0].open();
  clock.advance(DEFAULTS.joinTimeoutMs);
  assert.equal(sockets[0].closedWith.code, 4000);
  clock.advance(10_000);
  assert.equal(sockets.length, 2);
});

test('close(): the socket closes with 1000, nothing is retried, everything settles', async () => {
  const { chat, sockets, clock, events } = await setup();
  serveJoin(sockets[0]);
  const p = track(chat.send('bye'));
  chat.close();
  assert.equal(sockets[0].closedWith.code, 1000);
  sockets[0].drop(1000);
  clock.advance(60_000);
  assert.equal(sockets.length, 1);
  assert.ok((await settled(p)).error instanceof ClosedError);
  assert.ok((await settled(track(chat.send('after')))).error instanceof ClosedError);
  assert.equal(of(events, 'state').at(-1).state, 'closed');
});

test('reconnect() skips the rest of the delay', async () => {
  const { chat, sockets } = await setup({ random: () => 0.999999 });
  serveJoin(sockets[0]);
  sockets[0].drop(1006);
  assert.equal(sockets.length, 1);
  chat.reconnect();
  assert.equal(sockets.length, 2);
});

// ---- moderation -------------------------------------------------------------------

const RATE_LIMITED = 'Rate limited; slow down.';
const echo = (frame, seq) => ({ name: 'ana', message: frame.message, timestamp: seq, seq, cid: frame.cid });

test('moderation: a request goes out at once, in order, and settles by its own answer', async () => {
  const { chat, sockets, events } = await setup();
  serveJoin(sockets[0], { seq: 1, backlog: [msg(1)] });
  const before = track(chat.send('before'));
  const del = track(chat.deleteMessage(1));
  const after = track(chat.send('after'));
  const hist = track(chat.history());
  const s = sockets[0];
  assert.deepEqual(s.frames.map((f) => f.message ?? f.history ?? f), ['before', { delete: 1 }, 'after', {}],
    'nothing waits for an answer');
  // The server takes it: everyone (this session too) gets `deleted`, then its `ok`.
  s.receive({ deleted: 1 });
  assert.equal((await settled(del)).state, 'pending', 'not settled by a `deleted` (another moderator may have sent it)');
  s.receive(echo(s.frames[0], 2));
  s.answer(0, { ok: true, seq: 2 });
  s.answer(1, { ok: true });
  assert.equal((await settled(del)).state, 'resolved');
  assert.deepEqual(of(events, 'deleted'), [{ seq: 1 }]);
  s.answer(3, { history: [msg(2)], before: 3, more: false });
  s.receive(echo(s.frames[2], 3));
  assert.equal((await settled(before)).value.seq, 2);
  assert.equal((await settled(after)).value.seq, 3);
  assert.deepEqual((await settled(hist)).value.before, 3);
});

test('moderation: a refusal rejects it with the sentence and code, and reaches no other request', async () => {
  const { chat, sockets } = await setup();
  serveJoin(sockets[0]);
  const kick = track(chat.kick('u9', 300));
  const mute = track(chat.mute('u9', 0));
  const send = track(chat.send('x'));
  const s = sockets[0];
  assert.deepEqual(s.frames.slice(0, 2), [{ kick: { user: 'u9', secs: 300 } }, { mute: { user: 'u9', secs: 0 } }]);
  s.answer(1, { error: '"secs" is longer than this server allows.', code: 'secs_too_large' });
  s.answer(0, { error: 'Only moderators may delete, kick or mute.', code: 'not_moderator' });
  const err = (await settled(kick)).error;
  assert.ok(err instanceof RefusedError);
  assert.equal(err.message, 'Only moderators may delete, kick or mute.');
  assert.equal(err.code, 'not_moderator');
  assert.equal((await settled(mute)).error.code, 'secs_too_large');
  assert.equal((await settled(send)).state, 'pending');
  s.answer(2, { error: 'You are muted in this room.', code: 'muted' });
  assert.equal((await settled(send)).error.message, 'You are muted in this room.', 'its own answer');
  // Rate limited: the refusal carries its id like any other.
  const del = track(chat.deleteMessage(4));
  s.answer(3, { error: RATE_LIMITED, code: 'rate_limited' });
  assert.equal((await settled(del)).error.code, 'rate_limited');
  assert.equal(chat.pending, 0);
  assert.ok(!('fenceWaitMs' in DEFAULTS), 'no fence, no timer');
});

test('moderation: waits for a join; a close before its answer rejects it, and it is not sent again', async () => {
  const { chat, sockets, clock } = await setup();
  const early = track(chat.deleteMessage(2)); // before any join
  const send = track(chat.send('made after the delete'));
  serveJoin(sockets[0], { seq: 2 });
  assert.deepEqual(sockets[0].frames.map((f) => f.delete ?? f.message), [2, 'made after the delete'], 'in order');
  sockets[0].drop(1006);
  const err = (await settled(early)).error;
  assert.ok(err instanceof ClosedError);
  assert.equal(err.code, 1006);
  clock.advance(10_000);
  serveJoin(sockets[1], { seq: 2, recovered: true });
  assert.deepEqual(sockets[1].frames.map((f) => f.message), ['made after the delete'], 'only the send goes out again');
  sockets[1].receive(echo(sockets[1].frames[0], 3));
  assert.equal((await settled(send)).value.seq, 3);

  // A final close rejects what waits.
  const k = track(chat.kick('u1'));
  const m = track(chat.mute('u1', 5));
  assert.deepEqual(sockets[1].frames.slice(1), [{ kick: { user: 'u1', secs: 0 } }, { mute: { user: 'u1', secs: 5 } }]);
  // An answer from the old socket's ids means nothing here.
  sockets[1].receive({ ok: true, re: sockets[0].idAt(0) });
  assert.equal((await settled(k)).state, 'pending');
  sockets[1].drop(4001, 'Kicked');
  for (const t of [await settled(k), await settled(m)]) {
    assert.ok(t.error instanceof ClosedError);
    assert.equal(t.error.code, 4001);
  }
  assert.ok((await settled(track(chat.deleteMessage(1)))).error instanceof ClosedError);
});

// ---- typing indicators ---------------------------------------------------------------

const typingFrames = (sock) => sock.frames.filter((f) => 'typing' in f).map((f) => f.typing);

test('typing(): true at once, refreshed at most every typingRefreshMs, false after the idle time', async () => {
  const { chat, sockets, clock } = await setup();
  serveJoin(sockets[0]);
  chat.typing(true);
  assert.deepEqual(typingFrames(sockets[0]), [true]);
  // Keystrokes within the refresh time send nothing more.
  for (let i = 0; i < 5; i++) { clock.advance(250); chat.typing(true); }
  assert.deepEqual(typingFrames(sockets[0]), [true]);
  clock.advance(300); // 1550 ms after the first
  chat.typing(true);
  assert.deepEqual(typingFrames(sockets[0]), [true, true]);
  // No keystroke for typingIdleMs: false.
  clock.advance(DEFAULTS.typingIdleMs);
  assert.deepEqual(typingFrames(sockets[0]), [true, true, false]);
  // Nothing else while idle.
  clock.advance(60_000);
  assert.deepEqual(typingFrames(sockets[0]), [true, true, false]);
});

test('typing(): never two typing frames within a second; a send ends typing with no frame', async () => {
  const { chat, sockets, clock } = await setup();
  serveJoin(sockets[0]);
  chat.typing(true);
  chat.typing(false);
  chat.typing(true);
  chat.typing(false);
  assert.deepEqual(typingFrames(sockets[0]), [true], 'the rest waits for the gap');
  clock.advance(1000);
  assert.deepEqual(typingFrames(sockets[0]), [true, false], 'then only the latest state');
  chat.typing(true);
  clock.advance(1000);
  assert.deepEqual(typingFrames(sockets[0]), [true, false, true]);
  track(chat.send('done'));
  clock.advance(10_000);
  assert.deepEqual(typingFrames(sockets[0]), [true, false, true], 'the message ended it');
  // Typing while disconnected waits for the join.
  sockets[0].drop(1006);
  chat.typing(true);
  clock.advance(1000); // the reconnect delay, within the idle time
  const sock = sockets.at(-1);
  assert.notEqual(sock, sockets[0]);
  assert.deepEqual(typingFrames(sock), []);
  serveJoin(sock);
  assert.deepEqual(typingFrames(sock), [true]);
  // Left idle, it stops there.
  clock.advance(DEFAULTS.typingIdleMs);
  assert.deepEqual(typingFrames(sock), [true, false]);
});

test('a typing_rate_limited error is no answer to a send', async () => {
  const { chat, sockets, events } = await setup();
  serveJoin(sockets[0]);
  const p = track(chat.send('hi'));
  // A v2 session's refusal carries its code, and no `re`: the typing frame had no id.
  sockets[0].receive({ error: 'Typing updates too fast; slow down.', code: 'typing_rate_limited' });
  assert.equal((await settled(p)).state, 'pending');
  const cid = sockets[0].frames.find((f) => f.message).cid;
  sockets[0].receive({ name: 'ana', message: 'hi', timestamp: 9, seq: 1, cid });
  assert.equal((await settled(p)).state, 'resolved');
  assert.deepEqual(of(events, 'error'), [{ message: 'Typing updates too fast; slow down.', code: 'typing_rate_limited', re: null }]);
});

test('the typing event: typers by typer id, stopped, re-announced, expired locally, cleared on a close', async () => {
  const { chat, sockets, clock, events } = await setup();
  serveJoin(sockets[0]);
  const typers = () => of(events, 'typing').map((d) => d.typers.map((t) => `${t.name}#${t.typer}`));
  sockets[0].receive({ typing: { name: 'bob', typer: 2, ttl_ms: 4000 } });
  sockets[0].receive({ typing: { name: 'bob', typer: 5, user: 'u5', ttl_ms: 4000 } });
  assert.deepEqual(chat.typers, [{ name: 'bob', typer: 2 }, { name: 'bob', typer: 5, user: 'u5' }]);
  sockets[0].receive({ typing_stopped: { name: 'bob', typer: 2 } });
  // A re-announcement changes nothing visible, and restarts the expiry.
  clock.advance(3000);
  sockets[0].receive({ typing: { name: 'bob', typer: 5, user: 'u5', ttl_ms: 4000 } });
  clock.advance(3999);
  assert.deepEqual(typers(), [['bob#2'], ['bob#2', 'bob#5'], ['bob#5']]);
  // Heard of no more: expired by the module.
  clock.advance(1);
  assert.deepEqual(typers().at(-1), []);
  assert.deepEqual(chat.typers, []);
  // A typer's refresh period follows the server's ttl: a third of 4000 ms.
  chat.typing(true);
  clock.advance(1333);
  chat.typing(true);
  assert.deepEqual(typingFrames(sockets[0]), [true, true]);
  // A close forgets the typers: nobody will say when they stop.
  sockets[0].receive({ typing: { name: 'cy', typer: 7, ttl_ms: 4000 } });
  sockets[0].drop(1006);
  assert.deepEqual(typers().slice(-2), [['cy#7'], []]);
});

// ---- edits and reactions ---------------------------------------------------------------

test('edit(): sent live with an id, resolved by its ok after the edited event, refused with a code', async () => {
  const { chat, sockets, events } = await setup();
  serveJoin(sockets[0], { seq: 2, backlog: [msg(1), msg(2, { edited_at: 5000, reactions: { '👍': 2 } })] });
  // Messages carry what the server gave them.
  assert.deepEqual(of(events, 'message')[1], msg(2, { edited_at: 5000, reactions: { '👍': 2 } }));
  const s = sockets[0];
  const ok = track(chat.edit(1, 'new text'));
  const refused = track(chat.edit(2, 'too late'));
  assert.deepEqual(s.frames, [{ edit: { seq: 1, message: 'new text' } }, { edit: { seq: 2, message: 'too late' } }]);
  s.receive({ edited: { seq: 1, message: 'new text', edited_at: 7000 } });
  assert.equal((await settled(ok)).state, 'pending', 'the broadcast is not the answer');
  assert.deepEqual(of(events, 'edited'), [{ seq: 1, message: 'new text', edited_at: 7000 }]);
  s.answer(0, { ok: true });
  assert.equal((await settled(ok)).state, 'resolved');
  s.answer(1, { error: 'This message can no longer be edited (edit_window_secs, see GET /api/limits).', code: 'edit_too_late' });
  const err = (await settled(refused)).error;
  assert.ok(err instanceof RefusedError);
  assert.equal(err.code, 'edit_too_late');
  // Another member's edit: an event only. A malformed one: nothing.
  s.receive({ edited: { seq: 2, message: 'by bob', edited_at: 8000 } });
  s.receive({ edited: { seq: 'x', message: 'bad' } });
  assert.deepEqual(of(events, 'edited').map((e) => e.message), ['new text', 'by bob']);
  assert.equal(chat.pending, 0);
});

test('react(): toggles settle by their own answer; the reactions event carries whole counts', async () => {
  const { chat, sockets, events } = await setup();
  serveJoin(sockets[0], { seq: 1, backlog: [msg(1)] });
  const s = sockets[0];
  const add = track(chat.react(1, '👍'));
  const bad = track(chat.react(1, 'ab'));
  const back = track(chat.react(1, '👍'));
  assert.deepEqual(s.frames, [
    { react: { seq: 1, emoji: '👍' } }, { react: { seq: 1, emoji: 'ab' } }, { react: { seq: 1, emoji: '👍' } },
  ]);
  s.receive({ reactions: { seq: 1, counts: { '👍': 1 } } });
  s.answer(0, { ok: true });
  s.answer(1, { error: 'A reaction must be one emoji: a single character (grapheme) of at most 16 bytes.', code: 'react_emoji' });
  s.receive({ reactions: { seq: 1, counts: {} } });
  s.answer(2, { ok: true });
  // Each toggle resolves with the very detail of the `reactions` event it caused (the
  // one right before its answer), whatever came later.
  const [first, second] = of(events, 'reactions');
  assert.deepEqual([first, second], [{ seq: 1, counts: { '👍': 1 } }, { seq: 1, counts: {} }]);
  assert.equal((await settled(add)).value, first);
  assert.equal((await settled(bad)).error.code, 'react_emoji');
  assert.equal((await settled(back)).value, second);
  // In one batch, a later member's counts do not pass for this toggle's.
  const third = track(chat.react(1, '🎉'));
  s.receive({ batch: [
    { reactions: { seq: 1, counts: { '🎉': 1 } } },
    { ok: true, re: s.idAt(3) },
    { reactions: { seq: 1, counts: { '🎉': 2 } } },
  ] });
  assert.deepEqual((await settled(third)).value, { seq: 1, counts: { '🎉': 1 } });
  // No counts of that seq before the answer (a server that sent none): null.
  const fourth = track(chat.react(2, '👍'));
  s.answer(4, { ok: true });
  assert.equal((await settled(fourth)).value, null);
  // An edit resolves with nothing.
  const edit = track(chat.edit(1, 'x'));
  s.answer(5, { ok: true });
  assert.equal((await settled(edit)).value, undefined);
  // Counts that are not positive whole numbers are left out; a frame without counts is
  // no event.
  s.receive({ reactions: { seq: 1, counts: { '🎉': 2, x: 0, y: 'many' } } });
  s.receive({ reactions: { seq: 1 } });
  assert.deepEqual(of(events, 'reactions').at(-1), { seq: 1, counts: { '🎉': 2 } });
  assert.equal(of(events, 'reactions').length, 5);
  // A chat frame that carries reactions is still a message.
  s.receive(msg(2, { reactions: { '🎉': 1 } }));
  assert.deepEqual(seqs(events), [1, 2]);
});

test('edits and reactions are never queued: disconnected they reject at once; a close before the answer rejects, and nothing is resent', async () => {
  const { chat, sockets, clock, events } = await setup();
  // Before the first join.
  const early = await settled(track(chat.edit(1, 'x')));
  assert.ok(early.error instanceof ClosedError);
  serveJoin(sockets[0], { seq: 1, backlog: [msg(1)] });
  const edit = track(chat.edit(1, 'sent'));
  const react = track(chat.react(1, '🎉'));
  sockets[0].drop(1006);
  for (const t of [await settled(edit), await settled(react)]) {
    assert.ok(t.error instanceof ClosedError);
    assert.equal(t.error.code, 1006);
  }
  // Reconnecting: rejected at once with the last close's code, nothing sent.
  const meanwhile = await settled(track(chat.react(1, '👍')));
  assert.ok(meanwhile.error instanceof ClosedError);
  assert.equal(meanwhile.error.code, 1006);
  clock.advance(10_000);
  // The resume replays what changed before the gap: events like live ones.
  const s = sockets[1];
  s.open();
  s.receive({ roster: [] });
  s.receive({ edited: { seq: 1, message: 'sent', edited_at: 9000 } });
  s.receive({ reactions: { seq: 1, counts: { '🎉': 1 } } });
  s.receive({ joined: 'ana' });
  s.receive({ ready: true, epoch: EPOCH, seq: 1, recovered: true, v: 2 });
  assert.deepEqual(s.frames, [], 'the lost edit and reaction are not sent again');
  assert.deepEqual(of(events, 'edited'), [{ seq: 1, message: 'sent', edited_at: 9000 }]);
  assert.deepEqual(of(events, 'reactions'), [{ seq: 1, counts: { '🎉': 1 } }]);
  // close() rejects one in flight.
  const last = track(chat.edit(1, 'again'));
  assert.equal(s.frames.length, 1);
  chat.close();
  assert.ok((await settled(last)).error instanceof ClosedError);
  assert.ok((await settled(track(chat.react(1, '👍')))).error instanceof ClosedError);
});
