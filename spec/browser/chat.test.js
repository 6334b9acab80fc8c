// Drives Debian's chromium (headless, through playwright-core) against a
// running examples/chat server.  Run by spec/browser_spec.lua:
//
//   CHAT_URL=http://127.0.0.1:PORT SCREENSHOT=docs/chat.png \
//   [BROKEN_PROXY_URL=http://127.0.0.1:NGINXPORT] node spec/browser/chat.test.js
//
// Scenario: alice and bob (two browser contexts, so two cookie jars) join a
// room over WebSocket, see each other's presence and the room's history and
// chat both ways; carol's browser has no WebSocket, so her page falls back
// to Server-Sent Events and still chats with them; with BROKEN_PROXY_URL
// (nginx in front of the same server, not forwarding the upgrade headers),
// erin's WebSocket fails, the page's probe says the upgrade was lost and it
// falls back to SSE through the proxy; dave's page gets a bad
// ticket and shows the server's 401.  Prints one "ok"/"not ok" line per
// check and exits non-zero on the first failure.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

const BASE = process.env.CHAT_URL || 'http://127.0.0.1:8080';
const SHOT = process.env.SCREENSHOT || '';
const BROKEN_PROXY = process.env.BROKEN_PROXY_URL || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ROOM = process.env.CHAT_ROOM || `garden${process.pid}`;
const WAIT = 10000;

// Playwright gives Chromium a fresh --user-data-dir under os.tmpdir() (it
// refuses the flag in args); point that at a folder of our own, removed at
// the end.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'uvws-browser-'));
process.env.TMPDIR = tmp;
const { chromium } = require('playwright-core');

const started = Date.now();
let checks = 0;

function ok(what) {
  checks += 1;
  console.log(`ok ${checks} - ${what} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

async function check(what, fn) {
  try {
    await fn();
  } catch (e) {
    const err = new Error(`${what}: ${e.message.split('\n')[0]}`);
    err.step = what;
    throw err;
  }
  ok(what);
}

// ---------------------------------------------------------------------------
// Page helpers
// ---------------------------------------------------------------------------

async function joinAs(page, nick, room, base = BASE) {
  await page.goto(`${base}/`);
  await page.fill('#nick', nick);
  await page.fill('#room', room);
  await page.click('#join');
}

function waitTransport(page, kind) {
  return page.locator(`#status[data-transport="${kind}"]`).waitFor({ timeout: WAIT });
}

function waitMessage(page, nick, text) {
  return page.waitForFunction(([n, t]) =>
    [...document.querySelectorAll('#messages li.msg')].some((li) =>
      li.querySelector('.nick').textContent === n && li.querySelector('.text').textContent === t),
  [nick, text], { timeout: WAIT });
}

function waitEvent(page, text) {
  return page.waitForFunction((t) =>
    [...document.querySelectorAll('#messages li.event')].some((li) => li.textContent === t),
  text, { timeout: WAIT });
}

function waitMembers(page, nicks) {
  return page.waitForFunction((want) => {
    const have = [...document.querySelectorAll('#members li')].map((li) => li.textContent);
    return want.every((n) => have.includes(n));
  }, nicks, { timeout: WAIT });
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

// ---------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------

async function main() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-quic'],
    timeout: 30000,
  });
  const pageErrors = [];
  async function newPage(setup) {
    const ctx = await browser.newContext({ viewport: { width: 960, height: 660 } });
    if (setup) await setup(ctx);
    const page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    return page;
  }

  try {
    const alice = await newPage();
    const bob = await newPage();

    await check('alice joins over WebSocket', async () => {
      await joinAs(alice, 'alice', ROOM);
      await waitTransport(alice, 'ws');
      await waitMembers(alice, ['alice']);
    });
    await check('alice says hello before bob arrives', async () => {
      await say(alice, 'Hello from Alice!');
      await waitMessage(alice, 'alice', 'Hello from Alice!');
    });
    await check('bob joins over WebSocket and gets the history', async () => {
      await joinAs(bob, 'bob', ROOM);
      await waitTransport(bob, 'ws');
      await waitMessage(bob, 'alice', 'Hello from Alice!');
      await waitEvent(bob, '— 1 earlier message —');
    });
    await check('both see each other present', async () => {
      await waitMembers(bob, ['alice', 'bob']);
      await waitMembers(alice, ['alice', 'bob']);
      await waitEvent(alice, 'bob joined');
    });
    await check('bob -> alice', async () => {
      await say(bob, 'Hi Alice, Bob here — ça va ?');
      await waitMessage(alice, 'bob', 'Hi Alice, Bob here — ça va ?');
    });
    await check('alice -> bob', async () => {
      await say(alice, 'Welcome, Bob! Carol is coming too.');
      await waitMessage(bob, 'alice', 'Welcome, Bob! Carol is coming too.');
    });

    // Carol's browser has no WebSocket: the page must fall back to SSE.
    const carol = await newPage((ctx) => ctx.addInitScript(() => { delete window.WebSocket; }));
    await check('carol (no WebSocket) falls back to Server-Sent Events', async () => {
      const has = await carol.evaluate(() => typeof window.WebSocket);
      if (has !== 'undefined') throw new Error(`window.WebSocket is still ${has}`);
      await joinAs(carol, 'carol', ROOM);
      await waitTransport(carol, 'sse');
      await waitMessage(carol, 'bob', 'Hi Alice, Bob here — ça va ?');
      await waitEvent(carol, '— 3 earlier messages —');
      await waitMembers(carol, ['alice', 'bob', 'carol']);
    });
    await check('alice and bob see carol arrive', async () => {
      await waitEvent(alice, 'carol joined');
      await waitMembers(bob, ['alice', 'bob', 'carol']);
    });
    await check('carol (SSE + POST /send) -> alice and bob (WebSocket)', async () => {
      await say(carol, 'Carol here, over Server-Sent Events.');
      await waitMessage(alice, 'carol', 'Carol here, over Server-Sent Events.');
      await waitMessage(bob, 'carol', 'Carol here, over Server-Sent Events.');
    });
    await check('bob (WebSocket) -> carol (SSE)', async () => {
      await say(bob, 'Loud and clear, Carol.');
      await waitMessage(carol, 'bob', 'Loud and clear, Carol.');
      await waitMessage(alice, 'bob', 'Loud and clear, Carol.');
    });

    if (BROKEN_PROXY) {
      // Erin's page comes through a proxy that refuses upgrades.
      const erin = await newPage();
      await check('erin (proxy drops the upgrade) falls back to SSE through the proxy', async () => {
        await joinAs(erin, 'erin', ROOM, BROKEN_PROXY);
        await waitTransport(erin, 'sse');
        await waitMessage(erin, 'bob', 'Loud and clear, Carol.');
        await waitMembers(erin, ['alice', 'bob', 'carol', 'erin']);
      });
      await check('erin (SSE via the proxy) <-> alice (WebSocket)', async () => {
        await say(erin, 'Erin here, my proxy eats WebSockets.');
        await waitMessage(alice, 'erin', 'Erin here, my proxy eats WebSockets.');
        await say(alice, 'Still reaches us, Erin.');
        await waitMessage(erin, 'alice', 'Still reaches us, Erin.');
      });
    }

    // Dave's ticket is bogus: the server answers the upgrade with 401.
    const dave = await newPage((ctx) => ctx.route('**/ticket', (route) => route.fulfill({
      status: 200, contentType: 'application/json', body: '{"ticket":"not-a-real-ticket"}',
    })));
    await check('dave (bad ticket) sees the 401 rejection', async () => {
      await joinAs(dave, 'dave', ROOM);
      await waitTransport(dave, 'rejected');
      const text = await dave.textContent('#notice');
      if (!/401/.test(text) || !/ticket unknown, expired or already used/.test(text)) {
        throw new Error(`notice says: ${text}`);
      }
      const members = await alice.$$eval('#members li', (lis) => lis.map((li) => li.textContent));
      if (members.includes('dave')) throw new Error('dave got in');
    });

    if (SHOT) {
      await check(`screenshot saved to ${SHOT}`, async () => {
        await alice.bringToFront();
        await alice.locator('#text').fill('');
        await alice.screenshot({ path: SHOT });
        if (fs.statSync(SHOT).size < 10000) throw new Error('screenshot is suspiciously small');
      });
    }
    await check('no script errors in the pages', async () => {
      if (pageErrors.length) throw new Error(pageErrors.join('; '));
    });
  } finally {
    await browser.close();
  }
}

main().then(() => {
  console.log(`browser: ${checks} checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  fs.rmSync(tmp, { recursive: true, force: true });
}, (e) => {
  console.log(`not ok ${checks + 1} - ${e.message}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  process.exitCode = 1;
});
