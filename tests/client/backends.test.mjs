// The client module (static/edge-chat.js) against a real backend, with the `ws` package
// as its WebSocket and a proxy that breaks its connection in the middle of sends. Needs
// EDGE_CHAT_URL=http://127.0.0.1:PORT of a backend with the rate limit out of the way
// (tests/client/run.sh local|wrangler starts one).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { EdgeChat } from '../../static/edge-chat.js';
import { startCutter } from './cutter.mjs';

const BASE = (process.env.EDGE_CHAT_URL || '').replace(/\/+$/, '');
const skip = BASE ? false : 'EDGE_CHAT_URL is not set (tests/client/run.sh sets it)';
const STEP_MS = 15_000; // any single wait
const TEST_MS = 90_000;
// Quick reconnects: the delays themselves are tested against a fake clock.
const FAST = { backoffBaseMs: 20, backoffMaxMs: 200 };
const RUN = `mod-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;

const chats = [];
function open(options) {
  const chat = new EdgeChat({ WebSocket, ...FAST, ...options });
  chats.push(chat);
  const seen = [];
  chat.addEventListener('message', (e) => seen.push(e.detail));
  return { chat, seen };
}

async function waitUntil(what, fn, timeout = STEP_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(20);
  }
}

const live = (chat) => waitUntil(`${chat.name} live`, () => chat.state === 'live');

/** Runs `fn` inside the next `state` event with that state, before anything else
 * happens; resolves with what it returns. */
function onState(chat, state, fn) {
  return new Promise((resolve) => {
    const on = (e) => {
      if (e.detail.state !== state) return;
      chat.removeEventListener('state', on);
      resolve(fn());
    };
    chat.addEventListener('state', on);
  });
}

/** Every promise settles within the bound; returns their outcomes. */
async function allSettled(promises, timeout = STEP_MS) {
  let timer;
  const bound = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not every promise settled within ${timeout} ms`)), timeout);
  });
  try {
    return await Promise.race([Promise.allSettled(promises), bound]);
  } finally {
    clearTimeout(timer);
  }
}

/** The room's whole history, from a fresh v2 session, oldest first. */
async function roomHistory(room) {
  const { chat } = open({ base: BASE, room, name: 'auditor' });
  await live(chat);
  const all = [];
  let before;
  for (let pages = 0; pages < 50; pages++) {
    const page = await chat.history(before, 100);
    all.unshift(...page.messages);
    if (!page.more) break;
    before = page.messages[0].seq;
  }
  chat.close();
  return all;
}

/** Each text exactly once in `messages`, with consecutive seqs overall. */
function assertOnceEach(messages, texts, what) {
  const counts = new Map();
  for (const m of messages) counts.set(m.message, (counts.get(m.message) || 0) + 1);
  for (const t of texts) assert.equal(counts.get(t), 1, `${what}: ${JSON.stringify(t)} stored ${counts.get(t) || 0} times`);
  const seqs = messages.map((m) => m.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => seqs[0] + i), `${what}: consecutive seqs`);
}

let cutter;
before(async () => {
  if (!skip) cutter = await startCutter(BASE);
});
after(async () => {
  for (const c of chats) c.close();
  if (cutter) await cutter.close();
});

test('sends cut in every way are stored exactly once, and every promise settles', { skip, timeout: TEST_MS }, async () => {
  const room = `${RUN}-once`;
  const { seen: observed } = open({ base: BASE, room, name: 'observer' });
  const { chat: sender, seen: delivered } = open({ base: cutter.url, room, name: 'sender' });
  await waitUntil('both live', () => chats.every((c) => c.state === 'live'));
  const sends = []; // [text, promise]
  const send = (text) => {
    const p = sender.send(text);
    sends.push([text, p]);
    return p;
  };
  const stored = (text) => observed.some((m) => m.message === text);

  // 1. The echoes are lost: the messages are stored, the sender cannot know. After the
  //    reconnect the resumed backlog settles them; nothing is sent twice.
  cutter.mute();
  for (const t of ['lost echo 1', 'lost echo 2', 'lost echo 3']) send(t);
  await waitUntil('the server stored them', () => ['lost echo 1', 'lost echo 2', 'lost echo 3'].every(stored));
  assert.equal(sender.pending, 3, 'unsettled without their echo');
  cutter.cut();
  cutter.restore();
  await allSettled(sends.map(([, p]) => p));

  // 2. A frame cut in half: not stored; sent again after the reconnect. One more is
  //    sent while the connection is down.
  await live(sender);
  const whileDown = onState(sender, 'reconnecting', () => send('sent while down'));
  cutter.cutMidFrame();
  const half = send('cut in half');
  await allSettled([half, whileDown]);

  // 3. The old connection stalls with a send in it, the client gives up on it and sends
  //    again on a new one; then the old frame reaches the server after all. The server
  //    recognises the cid and stores nothing.
  await live(sender);
  await waitUntil('one connection', () => cutter.open === 1);
  cutter.stall();
  const late = send('arrives twice');
  await waitUntil('the frame held by the stalled connection', () => cutter.held > 0);
  const release = cutter.abandonStalled();
  await allSettled([late]);
  // The server has it (resent on the new connection): the late copy is answered with
  // the original, and nothing is stored. A history request after it, answered in order,
  // shows that the server has handled it.
  const handled = await release({ send: '{"history":{"limit":1}}', until: '"more":' });
  assert.equal(handled, 1, 'the stalled connection delivered its frame late');

  // 4. Back to normal.
  await live(sender);
  send('after everything');

  const outcomes = await allSettled(sends.map(([, p]) => p));
  const texts = sends.map(([t]) => t);
  outcomes.forEach((o, i) => assert.equal(o.status, 'fulfilled', `${texts[i]}: ${o.reason}`));
  const resolved = outcomes.map((o) => o.value);
  resolved.forEach((m, i) => assert.equal(m.message, texts[i]));
  assert.equal(sender.pending, 0);

  await waitUntil('the observer saw everything', () => texts.every(stored));
  await sleep(300); // a duplicate, if there were one, would be broadcast by now
  assertOnceEach(observed, texts, 'observer');
  const history = await roomHistory(room);
  assertOnceEach(history, texts, 'history');
  for (const m of resolved) {
    const kept = history.find((h) => h.message === m.message);
    assert.deepEqual(m, kept, 'the promise resolved with the stored message');
  }
  assertOnceEach(delivered, texts, 'the sender');
});

test('sends cut at random moments: still exactly once', { skip, timeout: TEST_MS }, async () => {
  const room = `${RUN}-chaos`;
  const { chat: sender } = open({ base: cutter.url, room, name: 'chaos' });
  await live(sender);
  const texts = Array.from({ length: 30 }, (_, i) => `chaos ${i}`);
  const promises = [];
  for (const [i, t] of texts.entries()) {
    promises.push(sender.send(t));
    if (i % 7 === 3) {
      // A short while after some sends: mid-frame, between frames, or before any.
      await sleep(i % 3);
      cutter.cut();
      cutter.restore();
    } else if (i % 7 === 5) {
      cutter.cutMidFrame();
    }
    await sleep(i % 4);
  }
  const outcomes = await allSettled(promises, 3 * STEP_MS);
  outcomes.forEach((o, i) => assert.equal(o.status, 'fulfilled', `${texts[i]}: ${o.reason}`));
  const history = await roomHistory(room);
  assertOnceEach(history, texts, 'history');
  assert.deepEqual(
    outcomes.map((o) => o.value.seq).sort((a, b) => a - b),
    history.filter((m) => texts.includes(m.message)).map((m) => m.seq),
    'the promises hold the stored seqs',
  );
});

test('history pages from the module walk back with no gap or overlap', { skip, timeout: TEST_MS }, async () => {
  const room = `${RUN}-pages`;
  const { chat } = open({ base: BASE, room, name: 'pager' });
  await live(chat);
  const texts = Array.from({ length: 45 }, (_, i) => `page ${i}`);
  for (const t of texts) await chat.send(t);
  const pages = [];
  let before;
  for (let i = 0; i < 10; i++) {
    const page = await chat.history(before, 20);
    pages.push(page);
    if (!page.more) break;
    before = page.messages[0].seq;
  }
  assert.deepEqual(pages.map((p) => p.messages.length), [20, 20, 5]);
  const walked = pages.reverse().flatMap((p) => p.messages);
  assert.deepEqual(walked.map((m) => m.message), texts);
  await assert.rejects(chat.history(undefined, 0), { name: 'RefusedError' });
});

test('a refused moderator frame rejects with its sentence; the sends around it settle as their own', { skip, timeout: TEST_MS }, async () => {
  // No join token (and this backend has no secret): every moderator frame is refused,
  // which is the answer the module must not hand to a send. Interleaved with sends, in
  // one go, so that they queue behind one another.
  const room = `${RUN}-mod`;
  const { chat } = open({ base: BASE, room, name: 'not-a-moderator' });
  await live(chat);
  const first = chat.send('before the delete');
  const del = chat.deleteMessage(1);
  const second = chat.send('between');
  const kick = chat.kick('u9', 60);
  const mute = chat.mute('u9', 60);
  const third = chat.send('after');
  const outcomes = await allSettled([first, del, second, kick, mute, third]);
  const [s1, d, s2, k, m, s3] = outcomes;
  for (const o of [d, k, m]) {
    assert.equal(o.status, 'rejected');
    assert.equal(o.reason.name, 'RefusedError');
    assert.equal(o.reason.message, 'Only moderators may delete, kick or mute.');
  }
  assert.deepEqual([s1, s2, s3].map((o) => o.status), ['fulfilled', 'fulfilled', 'fulfilled']);
  assert.deepEqual([s1, s2, s3].map((o) => o.value.message), ['before the delete', 'between', 'after']);
  assert.deepEqual([s1, s2, s3].map((o) => o.value.seq), [1, 2, 3]);
  assert.deepEqual((await roomHistory(room)).map((m) => m.message), ['before the delete', 'between', 'after'], 'nothing was deleted');
});

test('members() lists a big room exactly: pages, a quit while paging, live joins', { skip, timeout: TEST_MS }, async () => {
  // tests/client/run.sh starts its backend with roster_inline_max 2, so this room's
  // roster is paged; against another backend the roster may come whole, and the
  // outcome must be the same.
  const room = `${RUN}-members`;
  const names = ['m1', 'dup', 'm3', 'dup', 'm5', 'last'];
  const others = [];
  for (const name of names) {
    const { chat } = open({ base: BASE, room, name });
    await live(chat); // one after the other: the join order is this order
    others.push(chat);
  }
  const { chat } = open({ base: BASE, room, name: 'me' });
  let firstRoster = null;
  chat.addEventListener('roster', (e) => { firstRoster ??= e.detail; });
  await live(chat);
  assert.equal(chat.memberCount, 7);
  assert.equal(firstRoster.count, 6);
  if (firstRoster.more) assert.equal(chat.membersComplete, false);
  // The last joiner has not been listed yet (if paged): it leaves before the pages.
  const last = others.pop();
  last.close();
  await waitUntil('the quit of last', () => chat.memberCount === 6);
  const { chat: late } = open({ base: BASE, room, name: 'late' });
  await live(late);
  await waitUntil('the join of late', () => chat.memberCount === 7);
  const list = await chat.members();
  assert.deepEqual(list.map((e) => e.name), ['dup', 'dup', 'late', 'm1', 'm3', 'm5', 'me']);
  assert.equal(chat.membersComplete, true);
  assert.equal(chat.memberCount, 7);
});

test('typing: the other member sees it, then sees it end with the message; the typer never sees itself', { skip, timeout: TEST_MS }, async () => {
  const room = `${RUN}-typing`;
  const { chat: ana } = open({ base: BASE, room, name: 'ana' });
  const { chat: bo, seen } = open({ base: BASE, room, name: 'bo' });
  await live(ana);
  await live(bo);
  const anaSaw = [];
  ana.addEventListener('typing', (e) => anaSaw.push(e.detail.typers));
  ana.typing(true);
  await waitUntil('bo sees ana typing', () => bo.typers.length === 1);
  assert.equal(bo.typers[0].name, 'ana');
  assert.ok(Number.isSafeInteger(bo.typers[0].typer));
  await ana.send('typed');
  await waitUntil('the message and the end of typing at bo', () => seen.some((m) => m.message === 'typed'));
  assert.deepEqual(bo.typers, [], 'typing_stopped comes before the message');
  assert.deepEqual(anaSaw, [], 'no echo of its own typing');
  // And stopping by itself: typing(false) at once (past the gap since the last frame).
  await sleep(1100);
  ana.typing(true);
  await waitUntil('bo sees ana typing again', () => bo.typers.length === 1);
  await sleep(1100);
  ana.typing(false);
  await waitUntil('bo sees ana stop', () => bo.typers.length === 0);
});

test('edits and reactions: round trips, events at the other member, refusals with codes, what a late joiner and a resume get', { skip, timeout: TEST_MS }, async () => {
  const room = `${RUN}-edits`;
  const { chat: ana } = open({ base: BASE, room, name: 'ana' });
  const { chat: bo } = open({ base: BASE, room, name: 'bo' });
  await live(ana);
  await live(bo);
  const boEdits = [];
  const boCounts = [];
  const anaCounts = [];
  bo.addEventListener('edited', (e) => boEdits.push(e.detail));
  bo.addEventListener('reactions', (e) => boCounts.push(e.detail));
  ana.addEventListener('reactions', (e) => anaCounts.push(e.detail));
  const mine = await ana.send('first text');
  const hers = await bo.send('bo says');

  // ana edits her own message; bo hears it, with the time of the edit.
  const before = Date.now();
  await ana.edit(mine.seq, '  second text  ');
  await waitUntil('bo hears the edit', () => boEdits.length === 1);
  assert.equal(boEdits[0].seq, mine.seq);
  assert.equal(boEdits[0].message, 'second text', 'trimmed like a message');
  assert.ok(boEdits[0].edited_at >= before - 60_000, 'edited_at is a time in ms');

  // Refusals, each with its code, each settling only its own promise.
  const refusals = await allSettled([
    ana.edit(hers.seq, 'not mine'),
    ana.edit(999_999, 'no such message'),
    ana.edit(mine.seq, '   '),
    ana.react(mine.seq, 'two graphemes'),
    ana.react(999_999, '👍'),
  ]);
  assert.deepEqual(refusals.map((o) => [o.status, o.reason?.name, o.reason?.code]), [
    ['rejected', 'RefusedError', 'edit_not_yours'],
    ['rejected', 'RefusedError', 'edit_no_such_message'],
    ['rejected', 'RefusedError', 'message_empty'],
    ['rejected', 'RefusedError', 'react_emoji'],
    ['rejected', 'RefusedError', 'react_no_such_message'],
  ]);

  // Reactions toggle: bo adds one, ana adds the same and another, bo takes his back.
  await bo.react(mine.seq, '👍');
  await waitUntil('ana sees 👍 1', () => anaCounts.some((c) => c.seq === mine.seq && c.counts['👍'] === 1));
  await ana.react(mine.seq, '👍');
  await ana.react(mine.seq, '🎉');
  await bo.react(mine.seq, '👍');
  const expected = { seq: mine.seq, counts: { '👍': 1, '🎉': 1 } };
  // Whatever order the server lists the emoji in.
  const same = (a, b) => { try { assert.deepEqual(a, b); return true; } catch { return false; } };
  await waitUntil('both see 👍 1, 🎉 1', () => [anaCounts, boCounts].every((l) => same(l.at(-1), expected)));

  // A late joiner's backlog, and a history page, carry the latest text and the counts.
  const { chat: cy, seen } = open({ base: BASE, room, name: 'cy' });
  await live(cy);
  const shown = seen.find((m) => m.seq === mine.seq);
  assert.equal(shown.message, 'second text');
  assert.ok(Number.isSafeInteger(shown.edited_at));
  assert.deepEqual(shown.reactions, { '👍': 1, '🎉': 1 });
  assert.equal(seen.find((m) => m.seq === hers.seq).edited_at, undefined, 'an unedited message has no edited_at');
  const page = await cy.history();
  assert.deepEqual(page.messages.find((m) => m.seq === mine.seq).reactions, { '👍': 1, '🎉': 1 });

  // A resume: cy, away, misses an edit and a reaction, and gets them as events.
  const resume = { epoch: cy.epoch, seq: cy.seq };
  cy.close();
  await ana.edit(mine.seq, 'third text');
  await bo.react(mine.seq, '🎉');
  const { chat: back } = open({ base: BASE, room, name: 'cy', resume });
  const cyEdits = [];
  const cyCounts = [];
  let recovered = null;
  back.addEventListener('edited', (e) => cyEdits.push(e.detail));
  back.addEventListener('reactions', (e) => cyCounts.push(e.detail));
  back.addEventListener('ready', (e) => { recovered ??= e.detail.recovered; });
  await live(back);
  assert.equal(recovered, true, 'an exact resume');
  await waitUntil('the resume replays the edit and the counts', () => cyEdits.some((e) => e.message === 'third text')
    && cyCounts.some((c) => c.counts['🎉'] === 2));
  assert.deepEqual(cyCounts.at(-1), { seq: mine.seq, counts: { '👍': 1, '🎉': 2 } });
});
