// Browser tests of the chat page of `ws serve` (crates/ws-cli/web/index.html,
// app.js, style.css, with the client ws-rpc.js): a real headless Chromium
// (Debian's package, driven by playwright-core as in
// tests/interop/chromium_interop.mjs) opens the page that `ws serve` serves
// and uses it as a person would: fills the join form, types messages and
// presses Enter, clicks rooms, Leave and Retry, and reads what the page
// shows through its `data-testid` attributes. The servers are real
// `ws serve` processes, killed, frozen and restarted by the tests.
//
// Run through tests/web/run.sh, which builds `ws` and installs Chromium and
// playwright-core. Standalone:
//
//   WS_BIN=path/to/ws node tests/web/chat_chromium.mjs
//
// Prints one line per test, `ok web/NAME` or `FAIL web/NAME: reason`, and
// exits 1 if any test failed. Each test is bounded (WS_WEB_TEST_TIMEOUT
// seconds, default 90; every wait inside has its own, shorter, limit). Only
// 127.0.0.1 is used, ports are chosen by the kernel at run time, and every
// `ws serve` started is killed at the end (also on SIGINT/SIGTERM).
//
// Environment:
//   WS_BIN                    the `ws` binary (required)
//   WS_WEB_PLAYWRIGHT_DIR     where playwright-core is installed (default
//                             $WS_INTEROP_PLAYWRIGHT_DIR, else ~/.cache/ws-interop/playwright)
//   WS_WEB_CHROMIUM           the browser (default /usr/bin/chromium)
//   WS_WEB_SCREENSHOT         where the screenshot goes (default
//                             ${TMPDIR:-/tmp}/ws-chat.png; also -dark.png and
//                             -narrow.png beside it)
//   WS_WEB_TEST_TIMEOUT       per-test limit in seconds (default 90)
//   WS_WEB_FILTER             run only the tests whose name contains this

import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  Failure, defer, expect, runTests, setupFail as harnessSetupFail, step, stepNow, tests, withTimeout,
} from '../interop/harness.mjs';

const WS_BIN = process.env.WS_BIN;
const PLAYWRIGHT_DIR =
  process.env.WS_WEB_PLAYWRIGHT_DIR || process.env.WS_INTEROP_PLAYWRIGHT_DIR || path.join(os.homedir(), '.cache', 'ws-interop', 'playwright');
const CHROMIUM = process.env.WS_WEB_CHROMIUM || '/usr/bin/chromium';
const TEST_TIMEOUT = Number(process.env.WS_WEB_TEST_TIMEOUT || 90) * 1000;
const FILTER = process.env.WS_WEB_FILTER || '';
const SCREENSHOT = process.env.WS_WEB_SCREENSHOT || path.join(process.env.TMPDIR || os.tmpdir(), 'ws-chat.png');
const PREFIX = 'web';
const HOST = '127.0.0.1';

const setupFail = (reason) => harnessSetupFail(PREFIX, reason);

for (const [what, file] of [['WS_BIN', WS_BIN], ['WS_WEB_CHROMIUM', CHROMIUM]]) {
  if (!file) setupFail(`${what} is not set`);
  try {
    accessSync(file, fsConstants.X_OK);
  } catch {
    setupFail(`${what}=${file} is not an executable`);
  }
}
let chromium, playwrightVersion;
try {
  const require = createRequire(path.join(path.resolve(PLAYWRIGHT_DIR), 'package.json'));
  ({ chromium } = require('playwright-core'));
  playwrightVersion = require('playwright-core/package.json').version;
} catch (e) {
  setupFail(`cannot load playwright-core from ${PLAYWRIGHT_DIR}: ${e.message}`);
}

const note = (text) => process.stderr.write(`# ${text}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let runId = 0;
const fresh = (base) => `${base}-${process.pid % 10000}-${++runId}`;

// ---------------------------------------------------------------------------
// ws serve
// ---------------------------------------------------------------------------

const spawned = new Set();
const killAll = () => {
  for (const p of spawned) {
    try {
      p.kill('SIGKILL');
    } catch {
      // gone
    }
  }
};
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

/**
 * Start `ws serve --listen 127.0.0.1:PORT ARGS` (port 0: any); resolves once
 * it printed `listening on http://ADDR`. Killed after the current test.
 */
async function startServe({ port = 0, args = [] } = {}) {
  step(`starting ws serve ${port ? `on port ${port} ` : ''}${args.join(' ')}`);
  const proc = spawn(WS_BIN, ['serve', '--listen', `${HOST}:${port}`, '--threads', '1', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  spawned.add(proc);
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr = (stderr + d.toString()).slice(-800); });
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => { spawned.delete(proc); resolve({ code, sig }); }));
  const srv = {
    proc,
    exited,
    log: () => `ws serve stderr: ${JSON.stringify(stderr.trim())}`,
    /** Send `sig` (default SIGKILL); resolves when it is gone. */
    async kill(sig = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) {
        if (sig !== 'SIGKILL') proc.kill('SIGCONT');
        proc.kill(sig);
        const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
        await exited;
        clearTimeout(t);
      }
    },
  };
  defer(() => srv.kill());
  const addr = await withTimeout(new Promise((resolve, reject) => {
    let buf = '';
    proc.stdout.on('data', (d) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        const m = /^listening on http:\/\/(\S+)$/.exec(line);
        if (m) resolve(m[1]);
        else reject(new Failure(`ws serve printed ${JSON.stringify(line)} instead of 'listening on http://...'`));
      }
    });
    proc.on('error', (e) => reject(new Failure(`cannot start ws serve: ${e.message}`)));
    exited.then(({ code, sig }) => reject(new Failure(`ws serve exited with ${code ?? sig} before listening; ${srv.log()}`)));
  }), 10000, "ws serve's 'listening on' line");
  srv.addr = addr;
  srv.port = Number(addr.split(':').pop());
  srv.origin = `http://${addr}`;
  return srv;
}

/** Start it again on the same port (the port may take a moment to be free). */
async function restartServe(srv, args = []) {
  const end = Date.now() + 5000;
  for (;;) {
    try {
      return await startServe({ port: srv.port, args });
    } catch (e) {
      if (Date.now() > end) throw e;
      await sleep(100);
    }
  }
}

/**
 * A TCP relay on 127.0.0.1 in front of `srv`, to cut a page's connections
 * without stopping the server: `cut()` drops every connection through it,
 * `refuse(true)` closes new ones at once until `refuse(false)`.
 */
async function startRelay(srv) {
  const sockets = new Set();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) return client.destroy();
    const upstream = net.connect(srv.port, HOST);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await withTimeout(new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, resolve);
  }), 5000, 'relay listening');
  const relay = {
    origin: `http://${HOST}:${server.address().port}`,
    cut() {
      for (const s of sockets) s.destroy();
    },
    refuse(on) {
      refusing = on;
    },
  };
  defer(() => new Promise((resolve) => {
    relay.cut();
    server.close(() => resolve());
  }));
  return relay;
}

// ---------------------------------------------------------------------------
// The browser and the page
// ---------------------------------------------------------------------------

let browser, context;

const q = (id) => `[data-testid="${id}"]`;

/**
 * Open the chat page of `srv` (query string `query`, e.g. '?token=x'),
 * closed after the test. `p.problems` collects the page's uncaught errors.
 */
async function openPage(srv, { query = '', ctx = context, viewport } = {}) {
  step('opening the chat page');
  const page = await ctx.newPage();
  if (viewport) await page.setViewportSize(viewport);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // Failed WebSocket handshakes are expected where a server is down or refuses.
    if (m.type() === 'error' && !/WebSocket|Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  defer(() => page.close().catch(() => {}));
  await page.goto(`${srv.origin}/${query}`, { timeout: 10000 });
  const p = { page, problems, srv };
  return p;
}

/** Wait until `fn(arg)` is true in the page; a Failure saying `what` and showing the page's state if not within `ms`. */
async function waitIn(p, fn, arg, what, ms = 5000) {
  step(`waiting for ${what}`);
  try {
    await p.page.waitForFunction(fn, arg, { timeout: ms, polling: 25 });
  } catch (e) {
    if (!/Timeout/i.test(e.message)) throw new Failure(`${what}: ${e.message.split('\n')[0]}`);
    throw new Failure(`${what}: not within ${ms / 1000} s; the page shows ${await describePage(p)}${p.problems.length ? `; ${p.problems.slice(-3).join(' | ')}` : ''}`);
  }
}

/** What the page shows, in short, for failure messages. */
async function describePage(p) {
  try {
    return JSON.stringify(await p.page.evaluate(() => {
      const t = (id) => document.querySelector(`[data-testid="${id}"]`);
      return {
        status: `${t('status').dataset.state}: ${t('status-text').textContent} ${t('status-countdown').textContent}`.trim(),
        banner: t('conn-banner').hidden ? '' : t('conn-banner').textContent.replace(/\s+/g, ' ').trim(),
        view: document.querySelector('[data-testid="app"]').dataset.view,
        joinError: t('join-error').hidden ? '' : t('join-error').textContent,
        members: [...document.querySelectorAll('[data-testid="member"]')].map((m) => m.dataset.name),
        messages: [...document.querySelectorAll('[data-testid="message"]')].slice(-6).map((m) => `${m.dataset.sender}/${m.dataset.state}/${m.dataset.seq ?? '-'}: ${m.querySelector('[data-testid="message-text"]').textContent.slice(0, 40)}`),
      };
    }));
  } catch (e) {
    return `(cannot read the page: ${e.message.split('\n')[0]})`;
  }
}

/** Fill the join form and wait for the room. */
async function join(p, name, room) {
  step(`joining #${room} as ${name}`);
  await p.page.fill(q('join-name'), name);
  await p.page.fill(q('join-room'), room);
  await p.page.click(q('join-submit'));
  await waitIn(p, (room) => {
    const v = document.querySelector('[data-testid="room-view"]');
    return !v.hidden && document.querySelector('[data-testid="room-title"]').textContent === `#${room}`;
  }, room, `${name}'s page to show #${room}`);
}

/** Type `text` in the composer and press Enter. */
async function say(p, text) {
  step(`typing ${JSON.stringify(text)}`);
  await p.page.fill(q('composer-input'), text);
  await p.page.press(q('composer-input'), 'Enter');
}

/** The messages the page shows: [{text, sender, state, seq, own}]. */
function messages(p) {
  return p.page.evaluate(() => [...document.querySelectorAll('[data-testid="message"]')].map((m) => ({
    text: m.querySelector('[data-testid="message-text"]').textContent,
    sender: m.dataset.sender,
    state: m.dataset.state,
    seq: m.dataset.seq === undefined ? null : Number(m.dataset.seq),
    own: m.dataset.own === 'true',
    time: m.querySelector('[data-testid="message-time"]')?.textContent ?? '',
    error: m.querySelector('[data-testid="message-error"]')?.textContent ?? '',
  })));
}

/** Wait until the page shows a message with `text` (in `state`, if given). */
function waitMessage(p, text, { state, ms = 5000, who = 'the page' } = {}) {
  return waitIn(p, ({ text, state }) => [...document.querySelectorAll('[data-testid="message"]')].some((m) =>
    m.querySelector('[data-testid="message-text"]').textContent === text && (!state || m.dataset.state === state)),
  { text, state }, `${who} to show ${JSON.stringify(text)}${state ? ` as ${state}` : ''}`, ms);
}

function members(p) {
  return p.page.evaluate(() => [...document.querySelectorAll('[data-testid="member"]')].map((m) => m.dataset.name).sort());
}

function waitMembers(p, want, who) {
  const sorted = [...want].sort();
  return waitIn(p, (want) => JSON.stringify([...document.querySelectorAll('[data-testid="member"]')].map((m) => m.dataset.name).sort()) === JSON.stringify(want),
    sorted, `${who}'s member list to be [${sorted.join(', ')}]`);
}

function status(p) {
  return p.page.evaluate(() => ({
    state: document.querySelector('[data-testid="status"]').dataset.state,
    text: document.querySelector('[data-testid="status-text"]').textContent,
    countdown: document.querySelector('[data-testid="status-countdown"]').textContent,
    banner: document.querySelector('[data-testid="conn-banner"]').hidden ? '' : document.querySelector('[data-testid="conn-banner"]').textContent.replace(/\s+/g, ' ').trim(),
  }));
}

function waitStatus(p, state, who, ms = 5000) {
  return waitIn(p, (state) => document.querySelector('[data-testid="status"]').dataset.state === state, state, `${who}'s status to be '${state}'`, ms);
}

function noProblems(...pages) {
  for (const p of pages) expect(p.problems.length === 0, `the page reported errors: ${p.problems.slice(0, 3).join(' | ')}`);
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

const test = tests(PREFIX);

test('two-pages-talk', async () => {
  // Two tabs in one room see each other's messages within a second; each
  // shows its own messages as its own, with the sender and a time.
  const srv = await startServe();
  const room = fresh('lobby');
  const a = await openPage(srv);
  const b = await openPage(srv);
  await join(a, 'Ann', room);
  await join(b, 'Bob', room);
  await waitMembers(a, ['Ann', 'Bob'], 'Ann');

  let t0 = Date.now();
  await say(a, 'Hello from Ann ✓');
  await waitMessage(b, 'Hello from Ann ✓', { ms: 1000, who: "Bob's page" });
  const ab = Date.now() - t0;
  t0 = Date.now();
  await say(b, 'Hi Ann, Bob here 👋');
  await waitMessage(a, 'Hi Ann, Bob here 👋', { ms: 1000, who: "Ann's page" });
  const ba = Date.now() - t0;
  note(`Ann -> Bob ${ab} ms, Bob -> Ann ${ba} ms (typing, Enter, server, other page)`);

  await waitMessage(a, 'Hello from Ann ✓', { state: 'sent', who: "Ann's page" });
  await waitMessage(b, 'Hi Ann, Bob here 👋', { state: 'sent', who: "Bob's page" });
  for (const [p, me, other] of [[a, 'Ann', 'Bob'], [b, 'Bob', 'Ann']]) {
    const ms = await messages(p);
    expect(ms.length === 2, `${me}'s page shows ${ms.length} messages, expected 2: ${JSON.stringify(ms)}`);
    const mine = ms.find((m) => m.sender === me);
    const theirs = ms.find((m) => m.sender === other);
    expect(mine?.own === true && theirs?.own === false, `${me}'s page does not mark its own message apart: ${JSON.stringify(ms)}`);
    expect(ms.every((m) => /\d{1,2}:\d{2}/.test(m.time)), `${me}'s page shows no time on a message: ${JSON.stringify(ms)}`);
    expect(ms[0].seq === 1 && ms[1].seq === 2, `${me}'s page has seqs ${ms.map((m) => m.seq)}, expected 1, 2`);
  }
  // The composer is empty after Enter, and keeps the focus.
  const composer = await a.page.evaluate(() => ({ value: document.querySelector('[data-testid="composer-input"]').value, focused: document.activeElement?.dataset.testid }));
  expect(composer.value === '' && composer.focused === 'composer-input', `after Enter the composer is ${JSON.stringify(composer)}`);
  // The name is remembered for the next visit.
  const c = await openPage(srv);
  const remembered = await c.page.inputValue(q('join-name'));
  expect(remembered === 'Ann' || remembered === 'Bob', `a new page's name field holds ${JSON.stringify(remembered)}, expected the last name used`);
  noProblems(a, b, c);
});

/** A free TCP port on 127.0.0.1 (for a server that cannot take port 0). */
async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A private redis-server on a free 127.0.0.1 port, persistence off; killed
 * after the current test. Never a system instance.
 */
async function startRedis() {
  const port = await freePort();
  step(`starting redis-server on port ${port}`);
  const proc = spawn('redis-server', ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  spawned.add(proc);
  const exited = new Promise((resolve) => proc.on('exit', () => { spawned.delete(proc); resolve(); }));
  defer(async () => {
    proc.kill('SIGKILL');
    await exited;
  });
  await withTimeout(new Promise((resolve, reject) => {
    proc.on('error', (e) => reject(new Failure(`cannot start redis-server (is it installed?): ${e.message}`)));
    const poke = () => {
      const c = net.connect(port, HOST, () => {
        c.write('PING\r\n');
      });
      c.on('data', (d) => {
        c.destroy();
        if (d.toString().startsWith('+PONG')) resolve();
        else setTimeout(poke, 50);
      });
      c.on('error', () => setTimeout(poke, 50));
    };
    poke();
  }), 10000, 'redis-server answering PING');
  return `redis://${HOST}:${port}/`;
}

test('two-nodes-talk', async () => {
  // Two ws serve nodes on one Redis (--redis): a page on each, in one
  // room, see each other's messages; the rooms list counts both nodes.
  const redis = await startRedis();
  const one = await startServe({ args: ['--redis', redis] });
  const two = await startServe({ args: ['--redis', redis] });
  const room = fresh('nodes');
  const a = await openPage(one);
  const b = await openPage(two);
  await join(a, 'Ann', room);
  await join(b, 'Bob', room);
  // Bob's joining on node two reaches Ann on node one. (The member list a
  // join returns is the node's own: Bob's page lists only those who join
  // after him from node one; the room list counts everyone.)
  await waitMembers(a, ['Ann', 'Bob'], 'Ann');
  // Each node subscribes to the room's channel as its first member joins:
  // give the subscriptions a moment to be confirmed by Redis.
  await sleep(300);
  let t0 = Date.now();
  await say(a, 'From node one');
  await waitMessage(b, 'From node one', { ms: 2000, who: "Bob's page (node two)" });
  const ab = Date.now() - t0;
  t0 = Date.now();
  await say(b, 'And back from node two');
  await waitMessage(a, 'And back from node two', { ms: 2000, who: "Ann's page (node one)" });
  const ba = Date.now() - t0;
  note(`across nodes: Ann -> Bob ${ab} ms, Bob -> Ann ${ba} ms`);
  await waitMessage(a, 'From node one', { state: 'sent', who: "Ann's page" });
  for (const [p, who] of [[a, 'Ann'], [b, 'Bob']]) {
    const ms = await messages(p);
    // Both are seq 1, each on its own node: both show.
    expect(ms.length === 2 && ms.every((m) => m.seq === 1), `${who}'s page shows ${ms.length} messages, expected 2 (each once): ${JSON.stringify(ms.map((m) => m.text))}`);
  }
  // chat.rooms counts the members of every node (refreshed every few
  // seconds and on presence events).
  await waitIn(a, (r) => {
    const row = [...document.querySelectorAll('[data-testid="room-item"]')].find((e) => e.dataset.room === r);
    return row && Number(row.dataset.members) === 2;
  }, room, "the room list counting both nodes' members (2)", 15000);
  noProblems(a, b);
});

test('presence-and-room-list', async () => {
  // A third page joining and leaving updates the others' member lists and
  // the room list's counts; a page that closes counts as leaving; the room
  // list joins a room on click.
  const srv = await startServe();
  const room = fresh('team');
  const side = fresh('side');
  const a = await openPage(srv);
  const b = await openPage(srv);
  await join(a, 'Ann', room);
  await join(b, 'Bob', room);
  await waitMembers(a, ['Ann', 'Bob'], 'Ann');
  await waitMembers(b, ['Ann', 'Bob'], 'Bob');

  // Cat starts in another room, then clicks ours in the room list.
  const c = await openPage(srv);
  await join(c, 'Cat', side);
  await waitIn(c, (room) => !!document.querySelector(`[data-testid="room-item"][data-room="${room}"][data-members="2"]`), room,
    `Cat's room list to show #${room} with 2 members`, 8000);
  step(`Cat clicks #${room} in the room list`);
  await c.page.click(`${q('room-item')}[data-room="${room}"]`);
  await waitIn(c, (room) => document.querySelector('[data-testid="room-title"]').textContent === `#${room}`, room, `Cat's page to show #${room}`);
  for (const [p, who] of [[a, 'Ann'], [b, 'Bob'], [c, 'Cat']]) await waitMembers(p, ['Ann', 'Bob', 'Cat'], who);
  await waitIn(a, (room) => !!document.querySelector(`[data-testid="room-item"][data-room="${room}"][data-members="3"]`), room,
    `Ann's room list to count 3 in #${room}`);
  await waitIn(a, () => [...document.querySelectorAll('[data-testid="note"]')].some((n) => n.textContent.includes('Cat joined')), null, "Ann's page to say Cat joined");
  // Cat left #side by switching: that room is gone from the lists.
  await waitIn(a, (side) => !document.querySelector(`[data-testid="room-item"][data-room="${side}"]`), side, `#${side} to leave Ann's room list`, 8000);

  step('Cat clicks Leave room');
  await c.page.click(q('leave'));
  await waitIn(c, () => !document.querySelector('[data-testid="join-view"]').hidden, null, "Cat's page to show the join form again");
  await waitMembers(a, ['Ann', 'Bob'], 'Ann');
  await waitMembers(b, ['Ann', 'Bob'], 'Bob');
  await waitIn(b, () => [...document.querySelectorAll('[data-testid="note"]')].some((n) => n.textContent.includes('Cat left')), null, "Bob's page to say Cat left");
  await waitIn(a, (room) => !!document.querySelector(`[data-testid="room-item"][data-room="${room}"][data-members="2"]`), room,
    `Ann's room list to count 2 in #${room}`);

  // Dan joins and closes his tab: the connection's close counts as leaving.
  const d = await openPage(srv);
  await join(d, 'Dan', room);
  await waitMembers(a, ['Ann', 'Bob', 'Dan'], 'Ann');
  step("closing Dan's page");
  await d.page.close();
  await waitMembers(a, ['Ann', 'Bob'], 'Ann');
  await waitMembers(b, ['Ann', 'Bob'], 'Bob');
  noProblems(a, b, c);
});

test('server-restart', async () => {
  // The server is frozen with a message on its way, killed, and started
  // again on the same port. The pages show that they are reconnecting, with
  // a countdown; the message in flight fails visibly (with Retry); one sent
  // while away waits as pending and is delivered exactly once after the
  // pages joined the room again by themselves.
  let srv = await startServe();
  const room = fresh('ops');
  const a = await openPage(srv);
  const b = await openPage(srv);
  await join(a, 'Ann', room);
  await join(b, 'Bob', room);
  await say(a, 'before the restart');
  await waitMessage(b, 'before the restart', { who: "Bob's page" });

  step('freezing the server (SIGSTOP)');
  srv.proc.kill('SIGSTOP');
  await say(a, 'in flight when it died');
  await waitMessage(a, 'in flight when it died', { state: 'sending', who: "Ann's page" });
  await sleep(200);
  step('killing the frozen server (SIGKILL)');
  const killedAt = Date.now();
  await srv.kill('SIGKILL');

  // The call in flight is rejected, visibly.
  await waitMessage(a, 'in flight when it died', { state: 'failed', who: "Ann's page" });
  const failed = (await messages(a)).find((m) => m.text === 'in flight when it died');
  expect(/connection/i.test(failed.error), `the failed message says ${JSON.stringify(failed.error)}, expected why (the connection dropped)`);
  expect(await a.page.locator(q('message-retry')).count() === 1, 'the failed message has no Retry button');

  // Reconnecting, with a countdown.
  await waitStatus(a, 'reconnecting', 'Ann');
  await waitIn(a, () => /\d+\s*s/.test(document.querySelector('[data-testid="status-countdown"]').textContent), null, "Ann's status to count down", 5000);
  const st = await status(a);
  note(`while the server is down Ann's page shows: ${st.text} · ${st.countdown} · banner ${JSON.stringify(st.banner)}`);
  expect(/reconnect/i.test(st.text), `the status says ${JSON.stringify(st.text)} while reconnecting`);

  // A message sent while away waits as pending.
  await say(a, 'sent while the server was down');
  await waitMessage(a, 'sent while the server was down', { state: 'pending', who: "Ann's page" });
  const shot = SCREENSHOT.replace(/\.png$/i, '-reconnecting.png');
  await a.page.screenshot({ path: shot });
  note(`screenshot while reconnecting: ${shot}`);

  await sleep(Math.max(0, 1500 - (Date.now() - killedAt)));
  srv = await restartServe(srv);
  const restartedAt = Date.now();
  await waitStatus(a, 'open', 'Ann', 15000);
  await waitStatus(b, 'open', 'Bob', 15000);
  note(`both pages open again ${Date.now() - restartedAt} ms after the restart`);
  // Re-joined by themselves: each sees the other in the room again.
  await waitMembers(a, ['Ann', 'Bob'], 'Ann');
  await waitMembers(b, ['Ann', 'Bob'], 'Bob');
  await waitMessage(a, 'sent while the server was down', { state: 'sent', who: "Ann's page" });
  await waitMessage(b, 'sent while the server was down', { who: "Bob's page" });
  await sleep(500); // time for a duplicate to show, if there were one
  for (const [p, who] of [[a, 'Ann'], [b, 'Bob']]) {
    const ms = await messages(p);
    const n = ms.filter((m) => m.text === 'sent while the server was down').length;
    expect(n === 1, `${who}'s page shows the message sent while away ${n} times: ${JSON.stringify(ms)}`);
    const inFlight = ms.filter((m) => m.text === 'in flight when it died');
    expect(who === 'Bob' ? inFlight.length === 0 : inFlight.length === 1 && inFlight[0].state === 'failed',
      `${who}'s page shows the message in flight as ${JSON.stringify(inFlight)}`);
  }
  // The divider says the server restarted; the old message is still there above it.
  expect(await a.page.locator(q('restart-divider')).count() === 1, "Ann's page has no divider saying the server restarted");
  // Retry delivers the failed one, once.
  step('clicking Retry');
  await a.page.click(q('message-retry'));
  await waitMessage(a, 'in flight when it died', { state: 'sent', who: "Ann's page" });
  await waitMessage(b, 'in flight when it died', { who: "Bob's page" });
  await sleep(300);
  const bs = await messages(b);
  const after = bs.filter((m) => m.seq !== null && m.text !== 'before the restart');
  expect(JSON.stringify(after.map((m) => m.text)) === JSON.stringify(['sent while the server was down', 'in flight when it died']),
    `after the restart Bob's page shows ${JSON.stringify(after.map((m) => m.text))}`);
  noProblems(a, b);
});

test('connection-drop-same-server', async () => {
  // The connection drops but the server lives on: after the reconnect the
  // page joins again and merges the room's history by seq: the message it
  // missed while away shows, nothing shows twice, and there is no
  // "server restarted" divider; the message queued meanwhile goes out once.
  const srv = await startServe();
  const relay = await startRelay(srv);
  const room = fresh('flaky');
  const a = await openPage({ origin: relay.origin });
  const b = await openPage(srv);
  await join(a, 'Ann', room);
  await join(b, 'Bob', room);
  await say(a, 'one');
  await say(b, 'two');
  await waitMessage(a, 'two', { who: "Ann's page" });

  step("cutting Ann's connection (the server stays up)");
  relay.refuse(true);
  relay.cut();
  await waitStatus(a, 'reconnecting', 'Ann');
  await waitMembers(b, ['Bob'], 'Bob');
  await say(b, 'three, while Ann is away');
  await waitMessage(b, 'three, while Ann is away', { state: 'sent', who: "Bob's page" });
  await say(a, 'four, queued');
  await waitMessage(a, 'four, queued', { state: 'pending', who: "Ann's page" });
  relay.refuse(false);
  await waitStatus(a, 'open', 'Ann', 15000);
  await waitMessage(a, 'four, queued', { state: 'sent', who: "Ann's page" });
  await waitMessage(b, 'four, queued', { who: "Bob's page" });
  await waitMembers(b, ['Ann', 'Bob'], 'Bob');
  await sleep(300);
  for (const [p, who] of [[a, 'Ann'], [b, 'Bob']]) {
    const ms = await messages(p);
    const got = ms.map((m) => `${m.seq}:${m.text}`);
    const want = ['1:one', '2:two', '3:three, while Ann is away', '4:four, queued'];
    expect(JSON.stringify(got) === JSON.stringify(want), `${who}'s page shows ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  }
  expect(await a.page.locator(q('restart-divider')).count() === 0, "Ann's page says the server restarted; it did not");
  noProblems(a, b);
});

test('wrong-token-refused', async () => {
  // `ws serve --token`: a wrong token is refused at the handshake; the page
  // says it cannot connect (and that the token may be why) and never shows
  // the room. The right token works; no token at all is explained too.
  const srv = await startServe({ args: ['--token', 'secret'] });
  const room = fresh('private');
  const bad = await openPage(srv, { query: '?token=wrong' });
  await bad.page.fill(q('join-name'), 'Mallory');
  await bad.page.fill(q('join-room'), room);
  await bad.page.click(q('join-submit'));
  await waitStatus(bad, 'refused', 'the wrong-token page', 5000);
  await bad.page.screenshot({ path: SCREENSHOT.replace(/\.png$/i, '-refused.png') });
  const st = await status(bad);
  note(`with ?token=wrong the page shows: ${st.text} · ${st.countdown} · ${JSON.stringify(st.banner)}`);
  expect(/can.?t connect|refused/i.test(st.text + st.banner), `the status says ${JSON.stringify(st)}`);
  expect(/token/i.test(st.banner), `the banner does not mention the token: ${JSON.stringify(st.banner)}`);
  await sleep(2500); // a retry or two
  const view = await bad.page.evaluate(() => ({
    room: !document.querySelector('[data-testid="room-view"]').hidden,
    state: document.querySelector('[data-testid="status"]').dataset.state,
  }));
  expect(!view.room, 'the page with a wrong token shows the room');
  expect(view.state === 'refused', `after retries the status is ${view.state}`);

  const good = await openPage(srv, { query: '?token=secret' });
  await join(good, 'Alice', room);
  await waitStatus(good, 'open', 'the right-token page');
  await say(good, 'the right token works');
  await waitMessage(good, 'the right token works', { state: 'sent', who: 'the right-token page' });

  const none = await openPage(srv);
  await waitIn(none, () => /token/i.test(document.querySelector('[data-testid="conn-banner"]').textContent) && !document.querySelector('[data-testid="conn-banner"]').hidden,
    null, 'the page without a token to say the server needs one', 8000);
  noProblems(bad, good, none);
});

test('fifty-pages', async () => {
  // 50 pages in one room (one browser); 20 messages from one of them (at
  // 8 a second, under the server's 10 a second per connection) reach every
  // page exactly once, in order.
  const srv = await startServe();
  const room = fresh('crowd');
  const N = 50;
  const M = 20;
  const ctx = await browser.newContext({ viewport: { width: 800, height: 600 } });
  defer(() => ctx.close());
  const pages = [];
  const t0 = Date.now();
  for (let i = 0; i < N; i += 10) {
    const batch = await Promise.all(Array.from({ length: Math.min(10, N - i) }, (_, k) => openPage(srv, { ctx })));
    await Promise.all(batch.map((p, k) => join(p, `user${String(i + k).padStart(2, '0')}`, room)));
    pages.push(...batch);
  }
  await Promise.all(pages.map((p, i) => waitIn(p, (n) => Number(document.querySelector('[data-testid="member-count"]').textContent) === n, N, `page ${i} to count ${N} members`, 15000)));
  note(`${N} pages open and in #${room} in ${Date.now() - t0} ms`);

  const texts = Array.from({ length: M }, (_, i) => `broadcast ${i + 1} of ${M}`);
  const t1 = Date.now();
  for (const t of texts) {
    await say(pages[0], t);
    await sleep(125);
  }
  await Promise.all(pages.map((p, i) => waitIn(p, (last) => [...document.querySelectorAll('[data-testid="message-text"]')].some((e) => e.textContent === last),
    texts[M - 1], `page ${i} to show the last message`, 15000)));
  note(`${M} messages reached ${N} pages in ${Date.now() - t1} ms`);
  await sleep(300);
  const bad = [];
  await Promise.all(pages.map(async (p, i) => {
    const ms = (await messages(p)).filter((m) => m.text.startsWith('broadcast '));
    const got = ms.map((m) => m.text);
    const seqs = ms.map((m) => m.seq);
    if (JSON.stringify(got) !== JSON.stringify(texts) || seqs.some((s, k) => s !== k + 1)) bad.push(`page ${i}: ${JSON.stringify(got.length === M ? seqs : got)}`);
  }));
  expect(bad.length === 0, `${bad.length} pages did not show the ${M} messages once each, in order: ${bad.slice(0, 3).join('; ')}`);
  const rss = chromiumMemory();
  if (rss) note(`Chromium's processes with ${N} pages open: ${rss} (RSS, shared pages counted in each)`);
  noProblems(...pages);
});

test('rejected-message-shows-error', async () => {
  // A message the server rejects (here: over 10 a second) shows the
  // server's JSON-RPC error message on the message itself, with Retry.
  const srv = await startServe();
  const room = fresh('fast');
  const a = await openPage(srv);
  await join(a, 'Speedy', room);
  step('sending 13 messages at once');
  await a.page.evaluate(() => {
    const input = document.querySelector('[data-testid="composer-input"]');
    const form = document.querySelector('[data-testid="composer"]');
    for (let i = 1; i <= 13; i++) {
      input.value = `quick ${i}`;
      form.requestSubmit();
    }
  });
  await waitIn(a, () => document.querySelectorAll('[data-testid="message"][data-state="failed"]').length >= 3, null, 'three messages shown as failed');
  const ms = await messages(a);
  const failed = ms.filter((m) => m.state === 'failed');
  expect(ms.filter((m) => m.state === 'sent').length === 10, `expected 10 sent, got ${JSON.stringify(ms.map((m) => m.state))}`);
  expect(failed.every((m) => m.error.includes('too many messages: at most 10 per second')), `the failed messages say ${JSON.stringify(failed.map((m) => m.error))}`);
  await sleep(1100);
  step('retrying the first failed one');
  await a.page.click(`${q('message')}[data-state="failed"] ${q('message-retry')}`);
  await waitIn(a, () => document.querySelectorAll('[data-testid="message"][data-state="failed"]').length === 2, null, 'the retried message to be sent');
  // A room name that cannot be is explained inline.
  const b = await openPage(srv);
  await b.page.fill(q('join-name'), 'Zoë');
  await b.page.fill(q('join-room'), 'café');
  await b.page.click(q('join-submit'));
  await waitIn(b, () => /lowercase letters/.test(document.querySelector('[data-testid="join-error"]').textContent), null, 'the join form to say what a room name may be');
  expect(await b.page.locator(q('room-view')).isHidden(), 'the page shows a room after a refused join');
  noProblems(a, b);
});

test('screenshot', async () => {
  // A conversation going on, saved as PNGs: light (1280x800), dark, narrow.
  const srv = await startServe();
  const room = 'design-review';
  const shots = {};
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  defer(() => ctx.close());
  const ann = await openPage(srv, { ctx });
  const bob = await openPage(srv, { ctx });
  const cat = await openPage(srv, { ctx });
  const other = await openPage(srv, { ctx });
  await join(other, 'Dev Bot', 'releases');
  await join(bob, 'Bob Martin', room);
  await join(cat, 'Catalina Ruiz', room);
  await join(ann, 'Ann Lee', room);
  const lines = [
    [bob, 'Morning! Is the new build up on staging?'],
    [ann, 'Yes, deployed ten minutes ago. Reconnects are much smoother now.'],
    [cat, 'Nice. I restarted the server twice and the page picked up right where it left off.'],
    [cat, 'Even the messages I typed while it was down went out once it was back.'],
    [bob, 'Exactly once?'],
    [ann, 'Exactly once: they show as pending, then the server\'s copy replaces them.'],
    [bob, 'Ship it!'],
  ];
  for (const [p, text] of lines) {
    await say(p, text);
    await waitMessage(ann, text, { who: "Ann's page" });
  }
  await ann.page.click(q('composer-input'));
  await ann.page.fill(q('composer-input'), 'Writing the release notes now');
  await sleep(300);
  const base = SCREENSHOT.replace(/\.png$/i, '');
  shots.light = `${base}.png`;
  await ann.page.screenshot({ path: shots.light });
  await ann.page.emulateMedia({ colorScheme: 'dark' });
  await sleep(100);
  shots.dark = `${base}-dark.png`;
  await ann.page.screenshot({ path: shots.dark });
  await ann.page.emulateMedia({ colorScheme: 'light' });
  await bob.page.setViewportSize({ width: 390, height: 844 });
  await sleep(200);
  shots.narrow = `${base}-narrow.png`;
  await bob.page.screenshot({ path: shots.narrow });
  for (const [what, file] of Object.entries(shots)) {
    const size = statSync(file).size;
    expect(size > 10000, `the ${what} screenshot ${file} is only ${size} bytes`);
  }
  note(`screenshots: ${Object.values(shots).join(' ')}`);
  noProblems(ann, bob, cat, other);
});

/** The total RSS in MiB of this process's descendants (the browser's processes; Linux `ps`), or null. */
function chromiumMemory() {
  const r = spawnSync('ps', ['-eo', 'pid=,ppid=,rss=,comm='], { encoding: 'utf8', timeout: 5000 });
  if (r.status !== 0 || !r.stdout) return null;
  const rows = r.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/)).map(([pid, ppid, rss, comm]) => ({ pid: +pid, ppid: +ppid, rss: +rss, comm }));
  const mine = new Set([process.pid]);
  let kb = 0;
  let count = 0;
  for (let grew = true; grew;) {
    grew = false;
    for (const row of rows) {
      if (!mine.has(row.pid) && mine.has(row.ppid)) {
        mine.add(row.pid);
        grew = true;
        if (/chrom/i.test(row.comm)) {
          kb += row.rss;
          count++;
        }
      }
    }
  }
  return kb ? `${Math.round(kb / 1024)} MiB in ${count} processes` : null;
}

// ---------------------------------------------------------------------------

async function setup() {
  step(`launching ${CHROMIUM}`);
  // Playwright adds --headless and --no-sandbox itself and runs the browser
  // on a new, empty profile (a temporary --user-data-dir it removes after).
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage', '--no-proxy-server',
      // Same-site pages share renderers past this many: 50 pages stay within a
      // few GiB.
      `--renderer-process-limit=${process.env.WS_WEB_RENDERERS || 4}`,
    ],
  });
  context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
}

async function teardown() {
  for (const [what, fn] of [['browser', () => browser && browser.close()]]) {
    try {
      await withTimeout(Promise.resolve().then(fn), 20000, `stopping the ${what}`);
    } catch (e) {
      note(`teardown: ${e.message}`);
    }
  }
  killAll();
}

try {
  await withTimeout(setup(), 60000, 'setup');
} catch (e) {
  await teardown();
  setupFail(`${e.message} while ${stepNow()}`.replace(/\n/g, ' '));
}
note(`node ${process.version}, playwright-core ${playwrightVersion}, ${CHROMIUM} ${browser.version()}, ws binary ${WS_BIN}`);
const failed = await runTests({ filter: FILTER, timeoutMs: TEST_TIMEOUT });
await teardown();
process.exit(failed ? 1 : 0);
