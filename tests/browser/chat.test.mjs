// End-to-end test of the browser client in static/, driving Debian's Chromium through
// playwright-core. Needs a running backend: EDGE_CHAT_URL=http://127.0.0.1:PORT
// (tests/browser/run.sh starts the local runner and sets it). Without it the run fails.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { createHmac } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';
import { startCutter } from '../client/cutter.mjs';

const BASE = (process.env.EDGE_CHAT_URL || '').replace(/\/+$/, '');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const STEP_MS = 10_000; // any single wait
const TEST_MS = 60_000; // any single test
// Reconnecting after the network comes back: the page retries with capped exponential
// backoff, but goes at once on the browser's `online` event, so this is generous.
const RECONNECT_MS = 20_000;
const LAUNCH_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
// Without a backend there is nothing to test: fail, rather than skip every test, so
// that a run that lost its backend URL (node --test called directly, a CI step) cannot
// pass.
if (!BASE) {
  throw new Error('EDGE_CHAT_URL is not set: run tests/browser/run.sh, or set it to the '
    + 'http://127.0.0.1:PORT of a running backend');
}

// The server's limits, as the page gets them (null if not served: the tests that use them
// fail). The tests build over-limit input from these numbers rather than restating the
// protocol's defaults.
async function fetchLimits() {
  try {
    const res = await fetch(`${BASE}/api/limits`, { signal: AbortSignal.timeout(STEP_MS) });
    if (!res.ok) return null;
    const j = await res.json();
    const ok = ['max_name_chars', 'max_message_chars', 'max_frame_bytes'].every((k) => Number.isSafeInteger(j[k]) && j[k] > 0);
    return ok ? j : null;
  } catch {
    return null;
  }
}
const LIMITS = await fetchLimits();
function needLimits() {
  assert.ok(LIMITS, `GET ${BASE}/api/limits did not answer 200 with the three limits`);
  return LIMITS;
}
// The reconnect test cuts the page's TCP connections with a proxy of its own.
const skipProxy = new URL(BASE).protocol === 'http:' ? false : 'the connection-cutting proxy speaks plain http only';

// The backend's `backlog` (tests/browser/run.sh starts it with a small one, so that
// "load older messages" has something to load without sending 100 messages through the
// default rate limit). Unknown for a backend given by EDGE_CHAT_URL alone.
const BACKLOG = Number(process.env.EDGE_CHAT_BACKLOG || 0);
const skipOlder = (BACKLOG > 0 && BACKLOG <= 20 ? false : 'EDGE_CHAT_BACKLOG (at most 20) is not set (tests/browser/run.sh sets it)');
// The backend's `roster_inline_max` (tests/browser/run.sh starts it with a small one, so
// that a room of a few members has a paged roster).
const INLINE_MAX = Number(process.env.EDGE_CHAT_ROSTER_INLINE_MAX || 0);
const skipPaged = (INLINE_MAX > 0 && INLINE_MAX <= 5 ? false : 'EDGE_CHAT_ROSTER_INLINE_MAX (at most 5) is not set (tests/browser/run.sh sets it)');
// The backend's join-token secret (tests/browser/run.sh starts it with signed identity on
// and writes the secret there), so that the test can sign tokens as an app's backend does.
const SECRET_FILE = process.env.EDGE_CHAT_AUTH_SECRET_FILE || '';
const SECRET = SECRET_FILE ? (await readFile(SECRET_FILE, 'utf8')).trim() : '';
const skipIdentity = SECRET ? false : 'EDGE_CHAT_AUTH_SECRET_FILE is not set (tests/browser/run.sh sets it)';
// Where to write the README's screenshot (e.g. docs/screenshot.png), if anywhere.
const SCREENSHOT = process.env.EDGE_CHAT_SCREENSHOT || '';

const ROOM = `e2e-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
const XSS = '<img src=x onerror=alert(1)>';

let browser;
const users = {}; // name -> user, for the two users of the shared ROOM
const everyone = []; // every user opened, for the uncaught-error check

// A browser context with one page. `frames` collects every JSON frame the page receives
// on any of its WebSockets (observed from outside: the page has no test hooks).
async function newUser(label, { base = BASE } = {}) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.setDefaultNavigationTimeout(STEP_MS);
  const user = { label, base, context, page, dialogs: [], errors: [], frames: [], sockets: 0 };
  page.on('dialog', (d) => { user.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('pageerror', (e) => user.errors.push(e.message));
  page.on('websocket', (ws) => ws.on('framereceived', ({ payload }) => {
    let frame;
    try { frame = JSON.parse(String(payload)); } catch { return; /* not JSON: not ours */ }
    // A batch-mode server may put several frames in one message.
    const frames = frame && Array.isArray(frame.batch) ? frame.batch : [frame];
    user.frames.push(...frames);
  }));
  page.on('websocket', () => { user.sockets += 1; });
  everyone.push(user);
  return user;
}

// Opens the room from the URL hash and joins it under `name` through the setup form.
async function join(user, name, room) {
  const { page } = user;
  await page.goto(`${user.base}/#${room}`);
  await page.locator('#setup').waitFor({ state: 'visible' });
  assert.equal(await page.inputValue('#room-input'), room, 'the room comes from the URL hash');
  await page.fill('#name-input', name);
  await page.click('#join-btn');
  await waitLive(page);
}

async function openUser(name) {
  const user = await newUser(name);
  await join(user, name, ROOM);
  users[name] = user;
  return user;
}

function waitLive(page, timeout = STEP_MS) {
  return page.locator('#status[data-state="live"]').waitFor({ timeout });
}

// Polls a condition evaluated in the test process, up to `timeout`.
async function waitUntil(what, fn, timeout = STEP_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(50);
  }
}

// Texts of the messages currently shown, in order.
function messageTexts(page) {
  return page.$$eval('#messages li.msg', (els) => els.map((e) => ({
    name: e.querySelector('.who').textContent,
    text: e.querySelector('.text').textContent,
  })));
}

function waitForMessage(page, text) {
  return page.waitForFunction(
    (t) => [...document.querySelectorAll('#messages li.msg .text')].some((e) => e.textContent === t),
    text,
    { timeout: STEP_MS },
  );
}

function rosterNames(page) {
  return page.$$eval('#roster li .who', (els) => els.map((e) => e.textContent));
}

async function send(page, text) {
  await page.fill('#message-input', text);
  await page.press('#message-input', 'Enter');
}

// startCutter (tests/client/cutter.mjs): a TCP proxy in front of the backend whose
// connections the test can cut, like a network that drops: the page sees its socket fail
// (1006), not a close frame. Chromium's offline emulation (context.setOffline, CDP
// Network.emulateNetworkConditions) only blocks new connections and leaves an open
// WebSocket running, so it cannot do this alone.

// The data-state values the status element goes through from now on, without repeats
// (recorded in the page by a MutationObserver the test adds; the app is unchanged).
async function recordStates(page) {
  await page.evaluate(() => {
    const status = document.getElementById('status');
    const seen = [status.dataset.state];
    window.__recordedStates = seen;
    new MutationObserver(() => {
      if (seen[seen.length - 1] !== status.dataset.state) seen.push(status.dataset.state);
    }).observe(status, { attributes: true, attributeFilter: ['data-state'] });
  });
  return () => page.evaluate(() => window.__recordedStates.slice());
}

function messageSeqs(page) {
  return page.$$eval('#messages li.msg', (els) => els.map((e) => Number(e.dataset.seq)));
}

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: LAUNCH_ARGS,
    headless: true,
    timeout: 30_000,
  });
  await openUser('alice');
  await openUser('Zoë');
}, { timeout: TEST_MS });

after(async () => {
  if (browser) await browser.close();
});

test('the roster shows both names on both pages', { timeout: TEST_MS }, async () => {
  for (const { page } of Object.values(users)) {
    await page.waitForFunction(
      () => {
        const names = [...document.querySelectorAll('#roster li .who')].map((e) => e.textContent);
        return names.includes('alice') && names.includes('Zoë');
      },
      null,
      { timeout: STEP_MS },
    );
    const names = await rosterNames(page);
    assert.deepEqual([...names].sort(), ['Zoë', 'alice'].sort());
    assert.equal(await page.textContent('#roster-count'), '2');
  }
});

test('a big room: the count is the room\'s size, and the list loads the rest of a paged roster', { skip: skipPaged, timeout: TEST_MS }, async () => {
  const room = `${ROOM}-big`;
  const bots = Array.from({ length: INLINE_MAX + 3 }, (_, i) => `bot${i}`);
  // The members, as plain sockets from a page of the same origin, one join after the other.
  const host = await newUser('bots');
  await host.page.goto(`${BASE}/`);
  await host.page.evaluate(async ({ room, bots }) => {
    const url = `${location.origin.replace(/^http/, 'ws')}/api/room/${room}/websocket`;
    window.bots = [];
    for (const name of bots) {
      const ws = new WebSocket(url);
      await new Promise((resolve, reject) => {
        ws.onopen = () => ws.send(JSON.stringify({ name }));
        ws.onmessage = (e) => { if (JSON.parse(e.data).ready) resolve(); };
        ws.onclose = () => reject(new Error(`${name} closed while joining`));
      });
      ws.onclose = null;
      window.bots.push(ws);
    }
  }, { room, bots });
  const viewer = await newUser('viewer');
  await join(viewer, 'viewer', room);
  const { page } = viewer;
  // The roster frame listed only the first page; the count is the whole room.
  const first = viewer.frames.find((f) => Array.isArray(f.roster));
  assert.equal(first.roster.length, INLINE_MAX);
  assert.equal(first.count, bots.length);
  await page.waitForFunction((n) => document.querySelector('#roster-count').textContent === String(n), bots.length + 1);
  // The list is short, so it loads pages until it is complete (a long one would load
  // them as it is scrolled).
  const all = [...bots, 'viewer'].sort();
  await page.waitForFunction(
    (n) => document.querySelectorAll('#roster li .who').length === n && !document.querySelector('#roster .more-members'),
    all.length,
  );
  assert.deepEqual([...(await rosterNames(page))].sort(), all);
  // A member leaves: the count and the list follow.
  await host.page.evaluate(() => window.bots.pop().close());
  await page.waitForFunction((n) => document.querySelector('#roster-count').textContent === String(n), bots.length);
  await page.waitForFunction((n) => document.querySelectorAll('#roster li .who').length === n, bots.length);
  assert.ok(viewer.frames.some((f) => f.members && Array.isArray(f.members.page)), 'the page asked for member pages');
  await host.context.close();
  await viewer.context.close();
});

test('a message typed on one page appears on both', { timeout: TEST_MS }, async () => {
  const text = `hello from alice ${Date.now()}`;
  await send(users.alice.page, text);
  for (const { page } of Object.values(users)) {
    await waitForMessage(page, text);
    const shown = (await messageTexts(page)).filter((m) => m.text === text);
    assert.deepEqual(shown, [{ name: 'alice', text }], 'shown exactly once, with the sender');
  }
  assert.equal(await users.alice.page.inputValue('#message-input'), '', 'the input is cleared');
});

test('markup in a message is shown as literal text', { timeout: TEST_MS }, async () => {
  await send(users['Zoë'].page, XSS);
  for (const user of Object.values(users)) {
    await waitForMessage(user.page, XSS);
    assert.equal(await user.page.locator('#messages img').count(), 0, 'no <img> element was created');
  }
  // Give a would-be onerror handler the chance to fire.
  await users.alice.page.waitForTimeout(500);
  for (const user of Object.values(users)) {
    assert.deepEqual(user.dialogs, [], 'no dialog fired');
  }
});

test('a reloaded page shows the history, each message once', { timeout: TEST_MS }, async () => {
  const { page } = users['Zoë'];
  const earlier = await messageTexts(page);
  assert.ok(earlier.length >= 2);
  await page.reload();
  // The name is remembered and the room is in the hash, so the page rejoins by itself.
  await waitLive(page);
  assert.equal(await page.inputValue('#name-input'), 'Zoë');
  const afterReload = await messageTexts(page);
  assert.deepEqual(afterReload, earlier);
  assert.ok(afterReload.some((m) => m.text === XSS));
  // Both are still in the roster (rebuilt from scratch on the new connection).
  await page.waitForFunction(() => document.querySelectorAll('#roster li').length === 2, null, { timeout: STEP_MS });
  assert.deepEqual([...(await rosterNames(page))].sort(), ['Zoë', 'alice'].sort());
  // And the conversation goes on after the reload.
  const text = `after reload ${Date.now()}`;
  await send(page, text);
  await waitForMessage(users.alice.page, text);
  await waitForMessage(page, text);
});

test('an invalid room in the hash is refused client-side', { timeout: TEST_MS }, async () => {
  const { page } = users.alice;
  await page.goto(`${BASE}/#..`);
  await page.locator('#form-error').waitFor({ state: 'visible' });
  assert.match(await page.textContent('#form-error'), /not a valid room/);
  assert.equal(await page.locator('#chat').isVisible(), false);
});

test('a page that loses its connection resumes: each missed message once, in order', { skip: skipProxy, timeout: TEST_MS }, async () => {
  const room = `${ROOM}-rc`;
  const cutter = await startCutter(BASE);
  try {
    const sam = await newUser('sam');
    await join(sam, 'sam', room);
    const rhea = await newUser('rhea', { base: cutter.url });
    await join(rhea, 'rhea', room);
    const stamp = Date.now();
    const first = `before the cut ${stamp}`;
    await send(sam.page, first);
    await waitForMessage(rhea.page, first);
    const states = await recordStates(rhea.page);

    // The network goes: offline in the browser (navigator.onLine, new connections fail)
    // and the open socket cut under it.
    await rhea.context.setOffline(true);
    cutter.cut();
    await rhea.page.locator('#status[data-state="reconnecting"]').waitFor({ timeout: STEP_MS });

    const missed = [1, 2, 3].map((i) => `missed ${i} ${stamp}`);
    for (const text of missed) {
      await send(sam.page, text);
      await waitForMessage(sam.page, text); // stored: it has a seq
    }
    const whileDown = (await messageTexts(rhea.page)).map((m) => m.text);
    assert.ok(!missed.some((t) => whileDown.includes(t)), 'nothing arrived while the socket was down');
    assert.equal(await rhea.page.getAttribute('#status', 'data-state'), 'reconnecting');

    const readiesBefore = rhea.frames.filter((f) => f.ready === true).length;
    cutter.restore();
    await rhea.context.setOffline(false);
    await waitLive(rhea.page, RECONNECT_MS);
    await waitForMessage(rhea.page, missed[missed.length - 1]);

    const ready = rhea.frames.filter((f) => f.ready === true);
    assert.equal(ready.length, readiesBefore + 1, 'one new join');
    assert.equal(ready[ready.length - 1].recovered, true, 'the join resumed from the last seq seen');
    const shown = await messageTexts(rhea.page);
    assert.deepEqual(shown, await messageTexts(sam.page), 'the same messages in the same order as the sender');
    assert.deepEqual(shown.map((m) => m.text), [first, ...missed], 'each missed message once, in order');
    const seqs = await messageSeqs(rhea.page);
    assert.deepEqual(seqs, seqs.map((_, i) => seqs[0] + i), 'consecutive seqs, no gap, no repeat');
    assert.equal(await rhea.page.locator('#messages li.divider').count(), 0, 'no "messages may be missing" divider');
    assert.deepEqual(await states(), ['live', 'reconnecting', 'live']);

    // And the reconnected page is a full member again.
    await rhea.page.waitForFunction(() => document.querySelectorAll('#roster li').length === 2, null, { timeout: STEP_MS });
    const back = `back again ${stamp}`;
    await send(rhea.page, back);
    await waitForMessage(sam.page, back);
    await waitForMessage(rhea.page, back);
  } finally {
    await cutter.close();
  }
});

test('a message the server refuses goes back into the input (rate limit)', { timeout: TEST_MS }, async () => {
  const room = `${ROOM}-rl`; // a fresh room: its rate-limit bucket is full and no one else's
  const rita = await newUser('rita');
  await join(rita, 'rita', room);
  const { page } = rita;
  // More than the default burst (10), submitted through the form within one task, so no
  // token comes back in between.
  const texts = Array.from({ length: 12 }, (_, i) => `burst ${i + 1} ${Date.now()}`);
  await page.evaluate((list) => {
    const input = document.getElementById('message-input');
    const form = document.getElementById('compose-form');
    for (const t of list) {
      input.value = t;
      form.requestSubmit();
    }
  }, texts);

  // The server answers every frame, in order: with the message or with an error.
  const echoes = () => rita.frames.filter((f) => f.name === 'rita' && texts.includes(f.message));
  const errors = () => rita.frames.filter((f) => 'error' in f);
  await waitUntil('an answer to every frame', () => echoes().length + errors().length >= texts.length);
  const accepted = echoes().map((f) => f.message);
  assert.ok(errors().length >= 1, 'the burst was rate limited');
  assert.deepEqual(accepted, texts.slice(0, accepted.length), 'the first ones went through, in order');
  const refused = texts.slice(accepted.length);
  assert.equal(await page.inputValue('#message-input'), refused[0], 'the first refused text is back in the input');
  await page.locator('#notice').waitFor({ state: 'visible', timeout: STEP_MS });
  assert.equal(await page.textContent('#notice'), errors().at(-1).error, "the server's reason is shown");
  assert.deepEqual((await messageTexts(page)).map((m) => m.text), accepted, 'only the accepted ones are shown');

  // Not lost: once the bucket refills it can be sent as it is (bounded retries).
  for (let tries = 0; ; tries++) {
    const before = errors().length;
    await page.press('#message-input', 'Enter');
    await waitUntil('an answer', () => errors().length > before || echoes().length > accepted.length);
    if (echoes().length > accepted.length) break;
    assert.ok(tries < 5, 'still rate limited after several seconds');
    assert.equal(await page.inputValue('#message-input'), refused[0]);
    await sleep(1000);
  }
  await waitForMessage(page, refused[0]);
  assert.equal(await page.inputValue('#message-input'), '');
});

test('lengths are checked against /api/limits, in code points', { timeout: TEST_MS }, async () => {
  const { max_name_chars: maxName, max_message_chars: maxMessage } = needLimits();
  const u = await newUser('emoji');
  const { page } = u;
  await page.goto(`${BASE}/#${ROOM}-lim`);
  await page.locator('#setup').waitFor({ state: 'visible' });
  await page.waitForFunction((n) => document.getElementById('name-hint').textContent.includes(String(n)), maxName, { timeout: STEP_MS });

  // A name of the longest length, in characters of two UTF-16 units each, is kept whole.
  const longestName = '🙂'.repeat(maxName);
  await page.fill('#name-input', longestName);
  assert.equal(await page.inputValue('#name-input'), longestName, 'not cut by a maxlength');
  assert.equal(await page.textContent('#name-count'), `${maxName} / ${maxName} characters`);
  assert.equal(await page.getAttribute('#name-count', 'data-over'), 'false');
  // One more is refused with the reason, before any connection.
  await page.fill('#name-input', `${longestName}🙂`);
  assert.equal(await page.getAttribute('#name-count', 'data-over'), 'true');
  assert.match(await page.textContent('#name-count'), /1 too many/);
  await page.click('#join-btn');
  await page.locator('#form-error').waitFor({ state: 'visible' });
  assert.ok((await page.textContent('#form-error')).includes(String(maxName)));
  assert.equal(await page.locator('#chat').isVisible(), false);
  // The longest one joins.
  await page.fill('#name-input', longestName);
  await page.click('#join-btn');
  await waitLive(page);
  assert.ok((await rosterNames(page)).includes(longestName));

  // A message of the longest length, likewise.
  const longest = '😀'.repeat(maxMessage);
  await page.fill('#message-input', `${longest}😀`);
  assert.equal(await page.getAttribute('#message-count', 'data-over'), 'true');
  assert.match(await page.textContent('#message-count'), /1 too many/);
  const framesBefore = u.frames.length;
  await page.press('#message-input', 'Enter');
  await page.locator('#notice').waitFor({ state: 'visible' });
  assert.ok((await page.textContent('#notice')).includes(String(maxMessage)));
  assert.equal(await page.inputValue('#message-input'), `${longest}😀`, 'kept for editing');
  await page.fill('#message-input', longest);
  assert.equal(await page.inputValue('#message-input'), longest, 'not cut by a maxlength');
  assert.equal(await page.textContent('#message-count'), `${maxMessage} / ${maxMessage} characters`);
  assert.equal(await page.getAttribute('#message-count', 'data-over'), 'false');
  await page.press('#message-input', 'Enter');
  await waitForMessage(page, longest);
  assert.equal(await page.inputValue('#message-input'), '');
  assert.equal(await page.locator('#message-count').isVisible(), false, 'the counter goes with the text');
  const answers = u.frames.slice(framesBefore).filter((f) => 'error' in f || typeof f.message === 'string');
  assert.deepEqual(answers.map((f) => f.message), [longest], 'the over-long one was never sent');
});

test('without /api/limits the server refuses an over-long message and the page keeps it', { timeout: TEST_MS }, async () => {
  const limits = needLimits();
  const u = await newUser('fay');
  await u.context.route('**/api/limits', (r) => r.abort());
  await join(u, 'fay', `${ROOM}-fb`);
  const { page } = u;
  assert.doesNotMatch(await page.textContent('#name-hint'), /\d/, 'no limit stated');
  const tooLong = 'x'.repeat(limits.max_message_chars + 1);
  assert.ok(JSON.stringify({ message: tooLong }).length < limits.max_frame_bytes, 'test input under the frame cap');
  await page.fill('#message-input', tooLong);
  assert.equal(await page.locator('#message-count').isVisible(), false, 'no counter without limits');
  await page.press('#message-input', 'Enter');
  await waitUntil('the refusal', () => u.frames.some((f) => 'error' in f));
  await page.waitForFunction((t) => document.getElementById('message-input').value === t, tooLong, { timeout: STEP_MS });
  assert.equal(await page.textContent('#notice'), u.frames.find((f) => 'error' in f).error);
  assert.equal(await page.locator('#messages li.msg').count(), 0);
  assert.equal(await page.getAttribute('#status', 'data-state'), 'live', 'the socket stays open');
});

// Sends `text` through the page's form and waits until the server has stored it. A
// rate-limited text comes back into the input: it is sent again a second later.
async function sendStored(user, text) {
  const { page } = user;
  const stored = () => user.frames.some((f) => typeof f.seq === 'number' && f.message === text);
  await page.fill('#message-input', text);
  for (let tries = 0; tries < 15; tries++) {
    const errors = user.frames.filter((f) => 'error' in f).length;
    await page.press('#message-input', 'Enter');
    await waitUntil(`an answer to ${JSON.stringify(text)}`, () => stored() || user.frames.filter((f) => 'error' in f).length > errors);
    if (stored()) return;
    await page.waitForFunction((t) => document.getElementById('message-input').value === t, text, { timeout: STEP_MS });
    await sleep(1100);
  }
  throw new Error(`${text} was refused again and again`);
}

function outboxCount(page) {
  return page.locator('#outbox li').count();
}

test('older messages load when the list is scrolled to the top', { skip: skipOlder, timeout: 2 * TEST_MS }, async () => {
  const room = `${ROOM}-old`;
  const wes = await newUser('wes');
  await join(wes, 'wes', room);
  // Tall messages, so that the backlog alone fills the view and the list scrolls.
  const texts = Array.from({ length: BACKLOG + 7 }, (_, i) => `older ${i + 1}\n${'line\n'.repeat(5)}end`);
  for (const t of texts) await sendStored(wes, t);

  const vic = await newUser('vic');
  await join(vic, 'vic', room);
  const { page } = vic;
  await page.waitForFunction((n) => document.querySelectorAll('#messages li.msg').length === n, BACKLOG, { timeout: STEP_MS });
  assert.deepEqual((await messageTexts(page)).map((m) => m.text), texts.slice(-BACKLOG), 'the backlog');
  await page.locator('#load-older').waitFor({ state: 'visible' });
  assert.equal(vic.frames.filter((f) => Array.isArray(f.history)).length, 0, 'nothing loaded before the scroll');

  // Both tabs come from 127.0.0.1, so they share one rate-limit bucket, which wes has
  // just drained; a history request costs a token. Let one refill (1 per second by
  // default) so the page's single load on scrolling is not refused.
  await sleep(1100);
  await page.$eval('#messages', (el) => { el.scrollTop = 0; });
  await page.waitForFunction((n) => document.querySelectorAll('#messages li.msg').length === n, texts.length, { timeout: STEP_MS });
  const shown = await messageTexts(page);
  assert.deepEqual(shown.map((m) => m.text), texts, 'every message once, in order');
  const seqs = await messageSeqs(page);
  assert.deepEqual(seqs, seqs.map((_, i) => seqs[0] + i), 'consecutive seqs, no gap, no repeat');
  assert.equal(await page.locator('#load-older').count(), 0, 'nothing older: no more to load');
  assert.ok(await page.$eval('#messages', (el) => el.scrollTop > 0), 'the view stays where it was, not at the new top');
  assert.equal(vic.frames.filter((f) => Array.isArray(f.history)).length, 1, 'one page');
});

test('a reconnect during a send shows the message once in both tabs', { skip: skipProxy, timeout: TEST_MS }, async () => {
  const room = `${ROOM}-send`;
  const cutter = await startCutter(BASE);
  try {
    const bo = await newUser('bo');
    await join(bo, 'bo', room);
    const ana = await newUser('ana', { base: cutter.url });
    await join(ana, 'ana', room);
    const stamp = Date.now();
    const countIn = (user, text) => user.frames.filter((f) => typeof f.seq === 'number' && f.message === text).length;
    const shownOnce = async (text) => {
      for (const { page } of [ana, bo]) {
        await waitForMessage(page, text);
        const n = (await messageTexts(page)).filter((m) => m.text === text).length;
        assert.equal(n, 1, `${text} shown once`);
      }
    };

    // 1. The echo is lost and the line drops: the resumed join brings the message back,
    //    and the page shows it once, settled (no longer pending).
    const lost = `lost echo ${stamp}`;
    cutter.mute();
    await send(ana.page, lost);
    await waitForMessage(bo.page, lost);
    assert.equal(await outboxCount(ana.page), 1, 'pending while its echo is missing');
    cutter.cut();
    cutter.restore();
    await waitLive(ana.page, RECONNECT_MS);
    await shownOnce(lost);
    await waitUntil('the outbox empties', async () => (await outboxCount(ana.page)) === 0);

    // 2. The line stalls with the message in it; the page reconnects and sends it again
    //    (same cid); then the stalled copy reaches the server too. Stored once.
    await waitUntil('one proxied connection', () => cutter.open === 1);
    cutter.stall();
    const twice = `sent twice ${stamp}`;
    await send(ana.page, twice);
    await waitUntil('the message held up', () => cutter.held > 0);
    const release = cutter.abandonStalled();
    await waitLive(ana.page, RECONNECT_MS);
    await shownOnce(twice);
    await waitUntil('the outbox empties', async () => (await outboxCount(ana.page)) === 0);
    assert.equal(await release({ send: '{"history":{"limit":1}}', until: '"more":' }), 1);
    // Anything the late copy caused reaches bo before bo's own next message.
    const sync = `sync ${stamp}`;
    await send(bo.page, sync);
    await waitForMessage(bo.page, sync);
    await waitForMessage(ana.page, sync);
    await shownOnce(twice);
    assert.equal(countIn(bo, twice), 1, 'one chat frame for it reached the other tab');
    for (const { page } of [ana, bo]) {
      const seqs = await messageSeqs(page);
      assert.deepEqual(seqs, seqs.map((_, i) => seqs[0] + i), 'consecutive seqs');
      assert.deepEqual((await messageTexts(page)).map((m) => m.text), [lost, twice, sync]);
    }
  } finally {
    await cutter.close();
  }
});

test('two tabs chatting (the README screenshot)', { timeout: TEST_MS }, async () => {
  const room = `demo-${Math.random().toString(36).slice(2, 8)}`;
  const context = await browser.newContext({ viewport: { width: 1400, height: 620 }, colorScheme: 'light' });
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    const tab = (title) => `
      <section>
        <div class="tab">${title}</div>
        <iframe src="${BASE}/#${room}" title="${title}"></iframe>
      </section>`;
    await page.setContent(`<!doctype html><html><head><style>
        body { margin: 0; padding: 12px; background: #c9ced8; display: flex; gap: 12px;
               font: 13px system-ui, sans-serif; }
        section { flex: 1; display: flex; flex-direction: column; }
        .tab { align-self: flex-start; padding: 6px 14px; background: #f6f7f9;
               border-radius: 8px 8px 0 0; color: #1d2330; }
        iframe { border: 0; height: 560px; background: #fff; border-radius: 0 8px 8px 8px; }
      </style></head><body>${tab('Tab 1 · ana')}${tab('Tab 2 · Zoë')}</body></html>`);
    const [one, two] = ['Tab 1 · ana', 'Tab 2 · Zoë'].map((t) => page.frameLocator(`iframe[title="${t}"]`));
    for (const [frame, name] of [[one, 'ana'], [two, 'Zoë']]) {
      await frame.locator('#setup').waitFor({ state: 'visible' });
      await frame.locator('#name-input').fill(name);
      await frame.locator('#join-btn').click();
      await frame.locator('#status[data-state="live"]').waitFor();
    }
    const lines = [
      [one, 'Hi Zoë! Is the room working on your side?'],
      [two, 'Yes, every message once, in order. Even after my Wi-Fi dropped.'],
      [one, 'Same code on the edge and on my laptop.'],
    ];
    for (const [frame, text] of lines) {
      await frame.locator('#message-input').fill(text);
      await frame.locator('#message-input').press('Enter');
      for (const f of [one, two]) await f.locator('#messages li.msg .text', { hasText: text }).waitFor();
    }
    for (const f of [one, two]) {
      assert.deepEqual(await f.locator('#messages li.msg .text').allTextContents(), lines.map(([, t]) => t));
      await f.locator('#roster li', { hasText: 'Zoë' }).waitFor();
      await f.locator('#roster li', { hasText: 'ana' }).waitFor();
    }
    const png = await page.screenshot({ type: 'png' });
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG');
    if (SCREENSHOT) await writeFile(SCREENSHOT, png);
  } finally {
    await context.close();
  }
});

// ---- signed identity and moderation ------------------------------------------------

// A join token as an app's backend mints one: a JWT signed with HS256 (docs/protocol.md,
// "Signed identity"), valid for ten minutes.
function mintToken(claims, secret = SECRET) {
  const part = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const exp = Math.floor(Date.now() / 1000) + 600;
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ exp, ...claims })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

// Opens the page as an app does for a signed-in user: the room and the token in the
// fragment. The page joins by itself, without asking for a name.
async function openSignedIn(user, room, claims) {
  const token = mintToken({ room, ...claims });
  await user.page.goto(`${user.base}/#room=${room}&token=${token}`);
  await waitLive(user.page);
  assert.equal(new URL(user.page.url()).hash, `#room=${room}`, 'the token is taken out of the address');
  return token;
}

// The messages shown, with the label of their verified mark (null: none).
function shownWithMarks(page) {
  return page.$$eval('#messages li.msg', (els) => els.map((e) => ({
    name: e.querySelector('.who').textContent,
    text: e.querySelector('.text').textContent,
    verified: e.querySelector('.verified')?.getAttribute('aria-label') ?? null,
  })));
}

// The roster, with each entry's mark, role and moderation buttons.
function rosterEntries(page) {
  return page.$$eval('#roster li', (els) => els.map((e) => ({
    name: e.querySelector('.who').textContent,
    verified: e.querySelector('.verified')?.getAttribute('aria-label') ?? null,
    moderator: Boolean(e.querySelector('.role')),
    you: e.classList.contains('me'),
    actions: [...e.querySelectorAll('.mod-btn')].map((b) => b.textContent),
  })).sort((a, b) => a.name.localeCompare(b.name)));
}

function waitGone(page, text) {
  return page.waitForFunction(
    (t) => ![...document.querySelectorAll('#messages li.msg .text')].some((e) => e.textContent === t),
    text,
    { timeout: STEP_MS },
  );
}

function rosterItem(page, name) {
  return page.locator('#roster li', { has: page.locator('.who', { hasText: name }) });
}

// A moderator's kick or mute through the roster: the button, a duration, apply.
async function moderateFromRoster(page, action, name, secs) {
  await rosterItem(page, name).locator(`.mod-btn[data-action="${action}"]`).click();
  await page.locator('#mod-form').waitFor({ state: 'visible' });
  await page.selectOption('#mod-secs', String(secs));
  await page.click('#mod-apply');
  await page.locator('#mod-form').waitFor({ state: 'hidden' });
}

test('a moderator deletes a message, and it disappears in the other tab', { skip: skipIdentity, timeout: TEST_MS }, async () => {
  const room = `${ROOM}-del`;
  const stamp = Date.now();
  const vee = await newUser('vee');
  await openSignedIn(vee, room, { sub: 'u-vee', name: 'Vee' });
  const mod = await newUser('mod');
  await openSignedIn(mod, room, { sub: 'u-mod', name: 'Moda', role: 'moderator' });
  const pat = await newUser('pat');
  await join(pat, 'pat', room); // anonymous

  assert.match(await mod.page.textContent('#identity'), /u-mod.*moderator/);
  assert.equal(await pat.page.locator('#identity').isVisible(), false, 'anonymous: no identity shown');

  const texts = { vee: `hi from vee ${stamp}`, mod: `the moderator speaks ${stamp}`, pat: `spam from pat ${stamp}` };
  await send(vee.page, texts.vee);
  await waitForMessage(pat.page, texts.vee);
  await send(mod.page, texts.mod);
  await waitForMessage(pat.page, texts.mod);
  await send(pat.page, texts.pat);
  for (const { page } of [vee, mod, pat]) await waitForMessage(page, texts.pat);

  // Verified messages carry the mark of their user id; the anonymous one none.
  const expected = [
    { name: 'Vee', text: texts.vee, verified: 'verified user u-vee' },
    { name: 'Moda', text: texts.mod, verified: 'verified user u-mod' },
    { name: 'pat', text: texts.pat, verified: null },
  ];
  for (const { page } of [vee, mod, pat]) assert.deepEqual(await shownWithMarks(page), expected);
  // The other tab shows the moderator verified in its roster too (it joined after them).
  assert.deepEqual(await rosterEntries(pat.page), [
    { name: 'Moda', verified: 'verified user u-mod', moderator: true, you: false, actions: [] },
    { name: 'pat', verified: null, moderator: false, you: true, actions: [] },
    { name: 'Vee', verified: 'verified user u-vee', moderator: false, you: false, actions: [] },
  ]);
  // Only the moderator has delete controls.
  assert.equal(await mod.page.locator('#messages li.msg .delete-btn').count(), 3);
  for (const { page } of [vee, pat]) assert.equal(await page.locator('.delete-btn, .mod-btn').count(), 0);

  // Delete asks for a second click, then the message goes from every tab.
  const spam = mod.page.locator('#messages li.msg', { has: mod.page.locator('.text', { hasText: texts.pat }) });
  await spam.locator('.delete-btn').click();
  assert.equal(await spam.locator('.delete-btn').textContent(), 'Confirm delete');
  assert.equal(await mod.page.locator('#messages li.msg').count(), 3, 'not deleted on the first click');
  await spam.locator('.delete-btn').click();
  for (const { page } of [pat, vee, mod]) {
    await waitGone(page, texts.pat);
    assert.deepEqual(await shownWithMarks(page), expected.slice(0, 2), 'the others stay');
  }
  const seq = pat.frames.find((f) => f.message === texts.pat).seq;
  assert.deepEqual(pat.frames.filter((f) => 'deleted' in f), [{ deleted: seq }]);
  assert.equal(mod.frames.filter((f) => 'error' in f).length, 0, 'no refusal');

  // Gone for good: a reload does not bring it back.
  await pat.page.reload();
  await waitLive(pat.page);
  await waitForMessage(pat.page, texts.mod);
  assert.deepEqual(await shownWithMarks(pat.page), expected.slice(0, 2));
});

test('a moderator mutes, unmutes and kicks a verified user from the roster', { skip: skipIdentity, timeout: TEST_MS }, async () => {
  const { max_moderation_secs: maxSecs } = needLimits();
  assert.ok(Number.isSafeInteger(maxSecs) && maxSecs > 0, '/api/limits has max_moderation_secs');
  const room = `${ROOM}-kick`;
  const stamp = Date.now();
  const vee = await newUser('vee2');
  await openSignedIn(vee, room, { sub: 'u-vee', name: 'Vee' });
  const mod = await newUser('mod2');
  await openSignedIn(mod, room, { sub: 'u-mod', name: 'Moda', role: 'moderator' });

  // Controls on the verified member, none on oneself.
  assert.deepEqual(await rosterEntries(mod.page), [
    { name: 'Moda', verified: 'verified user u-mod', moderator: true, you: true, actions: [] },
    { name: 'Vee', verified: 'verified user u-vee', moderator: false, you: false, actions: ['Mute', 'Kick'] },
  ]);
  // Durations within the server's max_moderation_secs, and 0 (unmute) last.
  await rosterItem(mod.page, 'Vee').locator('.mod-btn[data-action="mute"]').click();
  const secs = await mod.page.$$eval('#mod-secs option', (os) => os.map((o) => Number(o.value)));
  assert.ok(secs.length >= 2 && secs.slice(0, -1).every((v) => v > 0 && v <= maxSecs), `durations ${secs}`);
  assert.equal(secs.at(-1), 0);
  assert.ok(secs.includes(maxSecs), 'the maximum is offered');
  await mod.page.click('#mod-cancel');

  // Muted: the user's message is refused with the server's sentence, and kept.
  await moderateFromRoster(mod.page, 'mute', 'Vee', secs[0]);
  await mod.page.locator('#notice', { hasText: 'Vee is muted' }).waitFor();
  const muted = `while muted ${stamp}`;
  await send(vee.page, muted);
  await vee.page.locator('#notice', { hasText: 'You are muted in this room.' }).waitFor();
  await vee.page.waitForFunction((t) => document.getElementById('message-input').value === t, muted, { timeout: STEP_MS });
  // Unmuted (0): it goes through.
  await moderateFromRoster(mod.page, 'mute', 'Vee', 0);
  await mod.page.locator('#notice', { hasText: 'Vee is no longer muted' }).waitFor();
  await vee.page.press('#message-input', 'Enter');
  await waitForMessage(mod.page, muted);

  // Kicked: the tab says so and does not reconnect; the roster loses the user.
  await moderateFromRoster(mod.page, 'kick', 'Vee', secs[0]);
  await vee.page.locator('#status[data-state="closed"]').waitFor();
  const status = await vee.page.textContent('#status');
  assert.match(status, /Kicked/);
  assert.match(status, /A moderator removed you from this room\./);
  await rosterItem(mod.page, 'Vee').waitFor({ state: 'detached' });
  await sleep(1500); // longer than the first reconnect delay (at most 0.5 s)
  assert.equal(vee.sockets, 1, 'no reconnect after 4001');
  assert.equal(await vee.page.getAttribute('#status', 'data-state'), 'closed');
  // Still barred: a reload is refused at the hello, and says why.
  await vee.page.reload();
  await vee.page.locator('#status[data-state="closed"]').waitFor();
  assert.match(await vee.page.textContent('#status'), /try again later/);
  assert.equal(mod.frames.filter((f) => 'error' in f).length, 0, 'no refusal');
});

test('a refused token is shown, not retried, and forgotten', { skip: skipIdentity, timeout: TEST_MS }, async () => {
  const room = `${ROOM}-tok`;
  const eve = await newUser('eve');
  const { page } = eve;
  const forged = mintToken({ sub: 'u-eve', room }, 'not the server secret, but as long as one');
  await page.goto(`${BASE}/#room=${room}&token=${forged}`);
  await page.locator('#form-error').waitFor({ state: 'visible' });
  assert.match(await page.textContent('#form-error'), /Token signature is invalid\./);
  assert.equal(await page.getAttribute('#status', 'data-state'), 'closed');
  assert.match(await page.textContent('#status'), /Invalid token/);
  assert.equal(new URL(page.url()).hash, `#room=${room}`, 'the token is out of the address');
  await sleep(1500); // longer than the first reconnect delay (at most 0.5 s)
  assert.equal(eve.sockets, 1, 'no reconnect after 1008');
  // Forgotten: joining from the form now is anonymous, by the user's choice.
  assert.equal(await page.inputValue('#room-input'), room);
  await page.fill('#name-input', 'eve');
  await page.click('#join-btn');
  await waitLive(page);
  assert.equal(await page.locator('#identity').isVisible(), false);
  assert.equal(eve.frames.filter((f) => f.ready === true).at(-1).user, undefined, 'an anonymous session');
});

test('a name cannot imitate the verified mark', { skip: skipIdentity, timeout: TEST_MS }, async () => {
  const room = `${ROOM}-mark`;
  const stamp = Date.now();
  // An anonymous name with a check mark in it is refused by the server, and the page
  // says why.
  const fake = await newUser('fake');
  await fake.page.goto(`${BASE}/#${room}`);
  await fake.page.locator('#setup').waitFor({ state: 'visible' });
  await fake.page.fill('#name-input', 'Alice ✓');
  await fake.page.click('#join-btn');
  await fake.page.locator('#form-error').waitFor({ state: 'visible' });
  assert.match(await fake.page.textContent('#form-error'),
    /Name may not contain check marks: only the server marks verified users\./);
  // The page's hello asks for v2, so the refusal carries its code.
  assert.deepEqual(fake.frames.filter((f) => 'error' in f),
    [{ error: 'Name may not contain check marks: only the server marks verified users.', code: 'name_check_mark' }]);
  assert.equal(fake.frames.some((f) => f.ready === true), false, 'never joined');

  // A verified user's mark is a badge outside the name, with no character in it; an
  // anonymous "Alice" next to it has none. The anonymous one joins first: once the
  // verified Alice is in the room, her name is refused to anonymous hellos.
  const anon = await newUser('anon');
  await join(anon, 'Alice', room);
  const ali = await newUser('ali');
  await openSignedIn(ali, room, { sub: 'u-alice', name: 'Alice' });
  const texts = { ali: `verified ${stamp}`, anon: `anonymous ${stamp}` };
  await send(ali.page, texts.ali);
  await waitForMessage(anon.page, texts.ali);
  await send(anon.page, texts.anon);
  for (const { page } of [ali, anon]) await waitForMessage(page, texts.anon);
  for (const { page } of [ali, anon]) {
    const shown = await page.$$eval('#messages li.msg', (els) => els.map((e) => ({
      name: e.querySelector('.who').textContent,
      marks: [...e.querySelectorAll('.verified')].map((m) => ({
        text: m.textContent,
        label: m.getAttribute('aria-label'),
        role: m.getAttribute('role'),
        inName: Boolean(m.closest('.who')),
        // Drawn, not typed: a box of its own with a background.
        drawn: getComputedStyle(m).backgroundColor !== 'rgba(0, 0, 0, 0)' && m.getBoundingClientRect().width > 0,
      })),
    })));
    assert.deepEqual(shown, [
      { name: 'Alice', marks: [{ text: '', label: 'verified user u-alice', role: 'img', inName: false, drawn: true }] },
      { name: 'Alice', marks: [] },
    ]);
    // Every mark on the page (roster and identity line included) is such a badge. (The
    // anonymous Alice, in the room first, learnt of the verified one from a live
    // `joined`, which carries no user: her roster shows no mark.)
    const texts = await page.$$eval('.verified', (els) => els.map((e) => e.textContent));
    assert.ok(texts.length >= 1 && texts.every((t) => t === ''), JSON.stringify(texts));
  }
});

test('typing: "ana is typing…", two names, several, and gone with the message, on a 390 px page', { timeout: 2 * TEST_MS }, async () => {
  const room = `${ROOM}-typing`;
  const ana = await newUser('ana');
  const cy = await newUser('cy');
  const bo = await newUser('bo');
  await bo.page.setViewportSize({ width: 390, height: 700 });
  for (const [user, name] of [[ana, 'ana'], [cy, 'cy'], [bo, 'bo']]) await join(user, name, room);
  // A third typer, as a plain v2 socket from a page of the same origin.
  const host = await newUser('typers');
  await host.page.goto(`${BASE}/`);
  await host.page.evaluate(async (room) => {
    const url = `${location.origin.replace(/^http/, 'ws')}/api/room/${room}/websocket`;
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.onopen = () => ws.send(JSON.stringify({ name: 'someone-with-a-long-name-typing', v: 2 }));
      ws.onmessage = (e) => { if (JSON.parse(e.data).ready) resolve(); };
      ws.onclose = () => reject(new Error('closed while joining'));
    });
    window.typer = ws;
  }, room);
  const shown = () => bo.page.textContent('#typing');
  const expect = (text) => bo.page.waitForFunction(
    (t) => document.getElementById('typing').textContent === t, text, { timeout: STEP_MS },
  );
  assert.equal(await bo.page.getAttribute('#typing', 'aria-live'), 'polite');
  assert.equal(await shown(), '');

  await ana.page.type('#message-input', 'hel');
  await expect('ana is typing…');
  await cy.page.type('#message-input', 'y');
  await expect('ana and cy are typing…');
  await ana.page.type('#message-input', 'l'); // a keystroke keeps ana typing
  await host.page.evaluate(() => window.typer.send(JSON.stringify({ typing: true })));
  await expect('several people are typing…');
  // Fits the narrow page: one line, nothing wider than the viewport.
  const fits = await bo.page.evaluate(() => {
    const el = document.getElementById('typing');
    const box = el.getBoundingClientRect();
    return box.right <= window.innerWidth && document.documentElement.scrollWidth <= window.innerWidth
      && box.height < 2 * parseFloat(getComputedStyle(el).lineHeight);
  });
  assert.ok(fits, 'the typing line fits a 390 px viewport on one line');
  await host.page.evaluate(() => window.typer.close());
  await expect('ana and cy are typing…');
  // ana's message ends her typing.
  await ana.page.press('#message-input', 'Enter');
  await waitForMessage(bo.page, 'hell');
  await expect('cy is typing…');
  // cy empties the input: stopped.
  await cy.page.fill('#message-input', '');
  await expect('');
  // Nobody saw their own typing.
  for (const [user, name] of [[ana, 'ana'], [cy, 'cy']]) {
    assert.ok(!user.frames.some((f) => f.typing && f.typing.name === name), `${name} got its own typing`);
    assert.equal(await user.page.textContent('#typing') === `${name} is typing…`, false);
  }
  for (const u of [ana, cy, bo, host]) await u.context.close();
});

// The message whose text is `text` on `page`, as a locator.
function messageItem(page, text) {
  return page.locator('#messages li.msg').filter({ has: page.locator('.text', { hasText: text }) });
}

// Whether the page is no wider than its viewport (nothing scrolls sideways).
function fitsWidth(page) {
  return page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth
    && document.body.scrollWidth <= window.innerWidth);
}

test('edits and reactions between two tabs: "(edited)", chips and their counts, by keyboard, on a 390 px page', { timeout: 2 * TEST_MS }, async () => {
  const room = `${ROOM}-react`;
  const ed = await newUser('ed');
  const fay = await newUser('fay');
  await fay.page.setViewportSize({ width: 390, height: 700 });
  await join(ed, 'ed', room);
  await join(fay, 'fay', room);
  await sendStored(ed, 'a mesage with a typo');
  await sendStored(fay, 'fay was here');
  await waitForMessage(fay.page, 'a mesage with a typo');
  await waitForMessage(ed.page, 'fay was here');

  // "Edit" only on one's own message, in each tab.
  const edMine = messageItem(ed.page, 'a mesage with a typo');
  await edMine.locator('.edit-btn').waitFor();
  assert.equal(await messageItem(ed.page, 'fay was here').locator('.edit-btn').count(), 0);
  assert.equal(await messageItem(fay.page, 'a mesage with a typo').locator('.edit-btn').count(), 0);
  await messageItem(fay.page, 'fay was here').locator('.edit-btn').waitFor();

  // Escape leaves the message as it was, and gives the focus back to "Edit".
  await edMine.locator('.edit-btn').click();
  const editor = edMine.locator('.editor textarea');
  assert.equal(await editor.inputValue(), 'a mesage with a typo');
  assert.ok(await editor.evaluate((e) => e === document.activeElement), 'the editor has the focus');
  await editor.fill('never saved');
  await editor.press('Escape');
  assert.equal(await edMine.locator('.editor').count(), 0);
  assert.equal(await edMine.locator('.text').textContent(), 'a mesage with a typo');
  assert.ok(await edMine.locator('.edit-btn').evaluate((e) => e === document.activeElement));

  // Enter saves: both tabs show the new text with "(edited)".
  await edMine.locator('.edit-btn').press('Enter');
  await editor.fill('a message without a typo');
  await editor.press('Enter');
  for (const page of [ed.page, fay.page]) {
    const item = messageItem(page, 'a message without a typo');
    await item.locator('.edited').waitFor();
    assert.equal(await item.locator('.edited').textContent(), '(edited)');
  }
  assert.equal(await messageItem(ed.page, 'a message without a typo').locator('.editor').count(), 0, 'the editor closed');
  assert.ok(!fay.frames.some((f) => f.error), 'no error on the way');

  // fay reacts from the picker, by keyboard: Enter opens it, Escape closes it.
  const fayItem = messageItem(fay.page, 'a message without a typo');
  const add = fayItem.locator('.react-add');
  assert.equal(await add.getAttribute('aria-label'), 'Add a reaction');
  await add.focus();
  await add.press('Enter');
  await fayItem.locator('.picker').waitFor();
  assert.equal(await add.getAttribute('aria-expanded'), 'true');
  assert.ok(await fitsWidth(fay.page), 'the open picker fits a 390 px page');
  await fay.page.keyboard.press('Escape');
  assert.equal(await fayItem.locator('.picker').count(), 0);
  assert.ok(await add.evaluate((e) => e === document.activeElement), 'the focus is back on the button');
  await add.press('Enter');
  await fayItem.locator('.picker button[aria-label="React with 🎉"]').press('Enter');
  const fayChip = fayItem.locator('.chip[data-emoji="🎉"]');
  await fay.page.waitForFunction(() => document.querySelector('.chip[data-emoji="🎉"][aria-pressed="true"]'));
  assert.equal(await fayChip.locator('.count').textContent(), '1');

  // ed sees the chip, not pressed (not his), and adds his own by pressing it.
  const edItem = messageItem(ed.page, 'a message without a typo');
  const edChip = edItem.locator('.chip[data-emoji="🎉"]');
  await edChip.waitFor();
  assert.equal(await edChip.getAttribute('aria-pressed'), 'false');
  assert.equal(await edChip.locator('.count').textContent(), '1');
  await edChip.click();
  await ed.page.waitForFunction(() => document.querySelector('.chip[data-emoji="🎉"][aria-pressed="true"] .count')?.textContent === '2');
  await fay.page.waitForFunction(() => document.querySelector('.chip[data-emoji="🎉"] .count')?.textContent === '2');
  assert.equal(await fayChip.getAttribute('aria-pressed'), 'true');
  assert.match(await fayChip.getAttribute('aria-label'), /2 reactions, yours among them/);

  // Toggling back: ed's press takes his back; fay's takes hers, and the chip goes.
  await edChip.click();
  await fay.page.waitForFunction(() => document.querySelector('.chip[data-emoji="🎉"] .count')?.textContent === '1');
  await ed.page.waitForFunction(() => document.querySelector('.chip[data-emoji="🎉"][aria-pressed="false"] .count')?.textContent === '1');
  await fayChip.click();
  await edChip.waitFor({ state: 'detached' });
  await fayChip.waitFor({ state: 'detached' });
  assert.ok(await fitsWidth(fay.page), 'the controls fit a 390 px page');

  // After a reload the edit still shows, and a reaction comes with the message.
  await edItem.locator('.react-add').click();
  await edItem.locator('.picker button[aria-label="React with 👍"]').click();
  await fay.page.waitForFunction(() => document.querySelector('.chip[data-emoji="👍"] .count')?.textContent === '1');
  await fay.page.reload();
  await waitLive(fay.page);
  const again = messageItem(fay.page, 'a message without a typo');
  await again.locator('.edited').waitFor();
  await again.locator('.chip[data-emoji="👍"]').waitFor();
  assert.equal(await again.locator('.chip[data-emoji="👍"] .count').textContent(), '1');
  assert.ok(await fitsWidth(fay.page), 'a 390 px page after the reload');

  // A reload is a new connection, and for an anonymous member a new reactor: ed's chip
  // shows the count, not pressed, and pressing it adds a reaction of the new connection.
  await again.locator('.chip[data-emoji="👍"]').click();
  await fay.page.waitForFunction(() => document.querySelector('.chip[data-emoji="👍"][aria-pressed="true"] .count')?.textContent === '2');
  await ed.page.reload();
  await waitLive(ed.page);
  const edChip2 = messageItem(ed.page, 'a message without a typo').locator('.chip[data-emoji="👍"]');
  await edChip2.waitFor();
  assert.equal(await edChip2.getAttribute('aria-pressed'), 'false', 'not known as his after the reload');
  assert.equal(await edChip2.locator('.count').textContent(), '2');
  assert.equal(await messageItem(ed.page, 'a message without a typo').locator('.edit-btn').count(), 0,
    'an anonymous member cannot edit what an earlier connection sent');
  await edChip2.click();
  await ed.page.waitForFunction(() => document.querySelector('.chip[data-emoji="👍"][aria-pressed="true"] .count')?.textContent === '3');
  await fay.page.waitForFunction(() => document.querySelector('.chip[data-emoji="👍"][aria-pressed="true"] .count')?.textContent === '3');
  for (const u of [ed, fay]) await u.context.close();
});

test('a verified user edits from another tab, and its chips say which reactions are its own from the counts', { skip: skipIdentity, timeout: TEST_MS }, async () => {
  const room = `${ROOM}-own`;
  const one = await newUser('una-1');
  const two = await newUser('una-2');
  const gus = await newUser('gus');
  await openSignedIn(one, room, { sub: 'u-una', name: 'Una' });
  await openSignedIn(two, room, { sub: 'u-una', name: 'Una' });
  await join(gus, 'gus', room);
  await sendStored(one, 'written in tab one');
  await sendStored(gus, 'from gus');
  // The other tab of the same user may edit it (same user id); gus may not.
  const inTwo = messageItem(two.page, 'written in tab one');
  await inTwo.locator('.edit-btn').waitFor();
  assert.equal(await messageItem(two.page, 'from gus').locator('.edit-btn').count(), 0);
  assert.equal(await messageItem(gus.page, 'written in tab one').locator('.edit-btn').count(), 0);
  await inTwo.locator('.edit-btn').click();
  await inTwo.locator('.editor textarea').fill('edited in tab two');
  await inTwo.locator('.editor textarea').press('Enter');
  for (const page of [one.page, gus.page]) await messageItem(page, 'edited in tab two').locator('.edited').waitFor();

  // gus and tab one react 👍 (count 2). Tab two, which did not make that reaction, sees
  // it unpressed; pressing it takes the user's reaction back (one reactor per user), and
  // the page, seeing the count go down, leaves the chip unpressed.
  const gusItem = messageItem(gus.page, 'edited in tab two');
  await gusItem.locator('.react-add').click();
  await gusItem.locator('.picker button[aria-label="React with 👍"]').click();
  const oneChip = messageItem(one.page, 'edited in tab two').locator('.chip[data-emoji="👍"]');
  await oneChip.click();
  await one.page.waitForFunction(() => document.querySelector('.chip[data-emoji="👍"][aria-pressed="true"] .count')?.textContent === '2');
  const twoChip = messageItem(two.page, 'edited in tab two').locator('.chip[data-emoji="👍"]');
  await two.page.waitForFunction(() => document.querySelector('.chip[data-emoji="👍"] .count')?.textContent === '2');
  assert.equal(await twoChip.getAttribute('aria-pressed'), 'false');
  const answers = () => two.frames.filter((f) => f.ok === true && !('seq' in f)).length;
  const before = answers();
  await twoChip.click();
  await waitUntil('the answer to tab two\'s toggle', () => answers() > before);
  await two.page.waitForFunction(() => document.querySelector('.chip[data-emoji="👍"] .count')?.textContent === '1');
  assert.equal(await twoChip.getAttribute('aria-pressed'), 'false', 'taken back: not pressed');
  // Tab one sees the count; it still shows the chip as its own, since counts do not
  // say whose (the limit of knowing one's reactions from one's own toggles).
  await one.page.waitForFunction(() => document.querySelector('.chip[data-emoji="👍"] .count')?.textContent === '1');
  for (const u of [one, two, gus]) await u.context.close();
});

test('no page raised an uncaught error', () => {
  for (const user of everyone) {
    assert.deepEqual(user.errors, [], `page errors on ${user.label}'s page`);
  }
});
