// End-to-end test of the browser client in static/, driving Debian's Chromium through
// playwright-core. Needs a running backend: EDGE_CHAT_URL=http://127.0.0.1:PORT
// (tests/browser/run.sh starts the local runner and sets it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const BASE = (process.env.EDGE_CHAT_URL || '').replace(/\/+$/, '');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const STEP_MS = 10_000; // any single wait
const TEST_MS = 60_000; // any single test
const LAUNCH_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const skip = BASE ? false : 'EDGE_CHAT_URL is not set (tests/browser/run.sh sets it)';

const ROOM = `e2e-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
const XSS = '<img src=x onerror=alert(1)>';

let browser;
const users = {}; // name -> { context, page, dialogs, errors }

async function openUser(name) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.setDefaultNavigationTimeout(STEP_MS);
  const user = { context, page, dialogs: [], errors: [] };
  page.on('dialog', (d) => { user.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('pageerror', (e) => user.errors.push(e.message));
  await page.goto(`${BASE}/#${ROOM}`);
  await page.locator('#setup').waitFor({ state: 'visible' });
  assert.equal(await page.inputValue('#room-input'), ROOM, 'the room comes from the URL hash');
  await page.fill('#name-input', name);
  await page.click('#join-btn');
  await waitLive(page);
  users[name] = user;
  return user;
}

function waitLive(page) {
  return page.locator('#status[data-state="live"]').waitFor({ timeout: STEP_MS });
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

before(async () => {
  if (skip) return;
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

test('the roster shows both names on both pages', { skip, timeout: TEST_MS }, async () => {
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

test('a message typed on one page appears on both', { skip, timeout: TEST_MS }, async () => {
  const text = `hello from alice ${Date.now()}`;
  await send(users.alice.page, text);
  for (const { page } of Object.values(users)) {
    await waitForMessage(page, text);
    const shown = (await messageTexts(page)).filter((m) => m.text === text);
    assert.deepEqual(shown, [{ name: 'alice', text }], 'shown exactly once, with the sender');
  }
  assert.equal(await users.alice.page.inputValue('#message-input'), '', 'the input is cleared');
});

test('markup in a message is shown as literal text', { skip, timeout: TEST_MS }, async () => {
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

test('a reloaded page shows the history, each message once', { skip, timeout: TEST_MS }, async () => {
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

test('an invalid room in the hash is refused client-side', { skip, timeout: TEST_MS }, async () => {
  const { page } = users.alice;
  await page.goto(`${BASE}/#..`);
  await page.locator('#form-error').waitFor({ state: 'visible' });
  assert.match(await page.textContent('#form-error'), /not a valid room/);
  assert.equal(await page.locator('#chat').isVisible(), false);
});

test('no page raised an uncaught error', { skip }, () => {
  for (const [name, user] of Object.entries(users)) {
    assert.deepEqual(user.errors, [], `page errors on ${name}'s page`);
  }
});
