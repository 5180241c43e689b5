// Interop tests between our `ws` binary and Node's `ws` package (v8).
//
// Part 1: a Node `ws` client against `ws echo`.
// Part 2: Node `ws` servers (written here) against our `ws connect` client.
//
// Run through tests/interop/run.sh, which installs the package and builds
// `ws`. Standalone:
//
//   WS_BIN=path/to/ws WS_INTEROP_NODE_DIR=dir/with/node_modules node tests/interop/node_interop.mjs
//
// Prints one line per test, `ok NAME` or `FAIL NAME: reason`, and exits 1
// if any test failed. Every test is bounded by WS_INTEROP_TEST_TIMEOUT
// seconds (default 20). Only 127.0.0.1 is used; ports are kernel-chosen.
// WS_INTEROP_FILTER=substring runs only the matching tests.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { createHash, randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants } from 'node:fs';
import path from 'node:path';
import {
  Failure, defer, expect, runTests, setupFail as harnessSetupFail, step, tests, withTimeout,
} from './harness.mjs';

const WS_BIN = process.env.WS_BIN;
const NODE_DIR = process.env.WS_INTEROP_NODE_DIR;
const TEST_TIMEOUT = Number(process.env.WS_INTEROP_TEST_TIMEOUT || 20) * 1000;
const FILTER = process.env.WS_INTEROP_FILTER || '';
const PREFIX = 'node';
const HOST = '127.0.0.1';

const setupFail = (reason) => harnessSetupFail(PREFIX, reason);

if (!WS_BIN) setupFail('WS_BIN is not set');
try {
  accessSync(WS_BIN, fsConstants.X_OK);
} catch {
  setupFail(`WS_BIN=${WS_BIN} is not an executable`);
}
if (!NODE_DIR) setupFail('WS_INTEROP_NODE_DIR is not set');
let WebSocket, WebSocketServer, wsVersion;
try {
  const require = createRequire(path.join(path.resolve(NODE_DIR), 'package.json'));
  WebSocket = require('ws');
  WebSocketServer = WebSocket.WebSocketServer;
  wsVersion = require('ws/package.json').version;
} catch (e) {
  setupFail(`cannot load the ws package from ${NODE_DIR}: ${e.message}`);
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------


function describe(data, isBinary) {
  if (data === undefined || data === null) return 'nothing';
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8');
  const kind = isBinary === undefined ? (typeof data === 'string' ? 'text' : 'binary') : (isBinary ? 'binary' : 'text');
  const sha = createHash('sha1').update(buf).digest('hex').slice(0, 12);
  return `${kind} ${buf.length} bytes sha1=${sha} starts ${JSON.stringify(buf.subarray(0, 24).toString('latin1'))}`;
}

// Compare a received message (Buffer + isBinary) with what was sent.
function expectSame(got, want, what = 'echo') {
  const wantBinary = typeof want !== 'string';
  const wantBuf = wantBinary ? want : Buffer.from(want, 'utf8');
  if (got.isBinary !== wantBinary || !got.data.equals(wantBuf)) {
    let n = 0;
    while (n < Math.min(got.data.length, wantBuf.length) && got.data[n] === wantBuf[n]) n++;
    throw new Failure(`${what}: sent ${describe(wantBuf, wantBinary)}, got back ${describe(got.data, got.isBinary)}; first difference at byte ${n}`);
  }
}


// Deterministic PRNG (mulberry32) so failures reproduce.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const randInt = (r, lo, hi) => lo + Math.floor(r() * (hi - lo + 1));

// Random text of exactly n UTF-8 bytes mixing 1- to 4-byte characters.
function randText(n, seed) {
  const r = rng(seed);
  const out = [];
  let left = n;
  while (left) {
    const w = randInt(r, 1, Math.min(4, left));
    let cp;
    if (w === 1) cp = randInt(r, 0x20, 0x7e);
    else if (w === 2) cp = randInt(r, 0x80, 0x7ff);
    else if (w === 3) cp = r() < 0.5 ? randInt(r, 0x800, 0xd7ff) : randInt(r, 0xe000, 0xfffd);
    else cp = randInt(r, 0x10000, 0x10ffff);
    out.push(String.fromCodePoint(cp));
    left -= w;
  }
  return out.join('');
}

function compressibleText(n) {
  const p = 'the quick brown fox jumps over the lazy dog 0123456789 ';
  return p.repeat(Math.ceil(n / p.length) + 1).slice(0, n);
}

function compressibleBytes(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i & 0xff;
  return b;
}

const SIZES = [0, 125, 126, 65535, 65536, 1 << 20];
const sizeName = (n) => (n === 1 << 20 ? '1MiB' : String(n));
const UNICODE_SAMPLES = [
  'héllo wörld',
  'Ελληνικά · русский · العربية · עברית',
  '中文字符 日本語のテキスト 한국어',
  'emoji 😀🎉👩‍👩‍👧‍👦 🇫🇷 and astral 𝄞 𐍈',
  'combining e\u0301 a\u0308 and zero width\u200bjoiner',
  '\u0000 nul and control \u0001\u001f\u007f',
  'max code point \u{10ffff} and \ufeff BOM',
];

const payloadCache = new Map();
function payload(kind, typ, n) {
  const key = `${kind}/${typ}/${n}`;
  if (!payloadCache.has(key)) {
    let v;
    if (typ === 'text') v = kind === 'compressible' ? compressibleText(n) : randText(n, n * 7 + 3);
    else v = kind === 'compressible' ? compressibleBytes(n) : randomBytes(n);
    payloadCache.set(key, v);
  }
  return payloadCache.get(key);
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

// Start `ws echo --listen 127.0.0.1:0`; resolves once it prints its address.
async function startEcho() {
  step('starting ws echo');
  const proc = spawn(WS_BIN, ['echo', '--listen', `${HOST}:0`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr = (stderr + d.toString()).slice(-600); });
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  const srv = { proc, exited, log: () => `ws echo stderr: ${JSON.stringify(stderr.trim())}` };
  defer(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15000);
      await exited;
      clearTimeout(t);
    }
  });
  const url = await withTimeout(new Promise((resolve, reject) => {
    let buf = '';
    proc.stdout.on('data', (d) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        if (line.startsWith('listening on ws://')) resolve(line.slice('listening on '.length));
        else reject(new Failure(`ws echo printed ${JSON.stringify(line)} instead of 'listening on ws://...'`));
      }
    });
    proc.on('error', (e) => reject(new Failure(`cannot start ws echo: ${e.message}`)));
    exited.then(({ code }) => reject(new Failure(`ws echo exited with ${code} before listening; ${srv.log()}`)));
  }), 10000, "ws echo 'listening on' line");
  srv.url = url;
  return srv;
}

// Run `ws connect URL ARGS`. Lines are written at once; stdin is closed
// once `waitForLines` lines were printed (default: as many as were sent),
// as a person would wait for the answers before ^D, or never with
// keepStdinOpen (the server ends the connection). Resolves to
// { code, out: [lines], err }.
async function runClient(url, { lines = [], args = [], waitForLines, keepStdinOpen = false, timeout = 15000 } = {}) {
  if (waitForLines === undefined) waitForLines = lines.length;
  step(`running ws connect ${url} ${args.join(' ')}`);
  const proc = spawn(WS_BIN, ['connect', url, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  defer(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL'); });
  proc.stdin.on('error', () => {});
  const out = [];
  let err = '';
  let partial = Buffer.alloc(0);
  const closeStdin = () => { if (!proc.stdin.destroyed && !proc.stdin.writableEnded) proc.stdin.end(); };
  proc.stdout.on('data', (d) => {
    partial = Buffer.concat([partial, d]);
    let nl;
    while ((nl = partial.indexOf(10)) >= 0) {
      out.push(partial.subarray(0, nl).toString('utf8'));
      partial = partial.subarray(nl + 1);
      if (!keepStdinOpen && out.length === waitForLines) closeStdin();
    }
  });
  proc.stderr.on('data', (d) => { err += d.toString(); });
  const done = new Promise((resolve, reject) => {
    proc.on('error', (e) => reject(new Failure(`cannot start ws connect: ${e.message}`)));
    proc.on('close', (code, sig) => resolve({ code: code === null ? `signal ${sig}` : code, out, err }));
  });
  if (lines.length) proc.stdin.write(lines.map((l) => l + '\n').join(''));
  if (!keepStdinOpen && waitForLines === 0) closeStdin();
  try {
    return await withTimeout(done, timeout, 'ws connect exit');
  } catch (e) {
    throw new Failure(`ws connect did not exit within ${timeout / 1000} s; printed ${out.length} lines (waited for ${waitForLines}), last ${JSON.stringify(out.slice(-3).map((l) => l.slice(0, 40)))}; stderr ${JSON.stringify(err.trim())}`);
  } finally {
    closeStdin();
  }
}

// ---------------------------------------------------------------------------
// A promise-based wrapper around a Node ws client
// ---------------------------------------------------------------------------

class Client {
  static async open(url, protocols, options = {}) {
    const c = new Client();
    c.ws = new WebSocket(url, protocols, { handshakeTimeout: 10000, ...options });
    defer(() => c.ws.terminate());
    c.messages = [];
    c.waiters = [];
    c.pongs = [];
    c.pongWaiters = [];
    c.responseHeaders = null;
    c.ws.on('upgrade', (res) => { c.responseHeaders = res.headers; });
    c.ws.on('message', (data, isBinary) => c.push({ data, isBinary }));
    c.ws.on('pong', (data) => {
      c.pongs.push(data);
      const w = c.pongWaiters.shift();
      if (w) w(c.pongs.shift());
    });
    c.closed = new Promise((resolve) => {
      c.ws.on('close', (code, reason) => {
        c.closeInfo = { code, reason: reason.toString() };
        resolve(c.closeInfo);
        c.push(null);
      });
    });
    c.errors = [];
    c.ws.on('error', (e) => c.errors.push(e.message));
    step(`connecting to ${url}`);
    await withTimeout(new Promise((resolve, reject) => {
      c.ws.once('open', resolve);
      c.ws.once('error', (e) => reject(new Failure(`connect failed: ${e.message}`)));
    }), 10000, 'opening handshake');
    return c;
  }

  push(m) {
    const w = this.waiters.shift();
    if (w) w(m);
    else this.messages.push(m);
  }

  recv(what = 'message') {
    const p = this.messages.length ? Promise.resolve(this.messages.shift()) : new Promise((r) => this.waiters.push(r));
    return withTimeout(p, 10000, what).then((m) => {
      if (m === null) {
        this.messages.push(null);
        throw new Failure(`connection closed (${JSON.stringify(this.closeInfo)}) while waiting for ${what}; errors ${JSON.stringify(this.errors)}`);
      }
      return m;
    });
  }

  nextPong() {
    const p = this.pongs.length ? Promise.resolve(this.pongs.shift()) : new Promise((r) => this.pongWaiters.push(r));
    return withTimeout(p, 5000, 'pong');
  }

  send(data, opts = {}) {
    return new Promise((resolve, reject) => {
      this.ws.send(data, { binary: typeof data !== 'string' && opts.binary !== false, ...opts }, (e) => (e ? reject(e) : resolve()));
    });
  }

  async roundtrip(msg, what = 'echo') {
    step(`sending ${describe(msg)}`);
    await this.send(msg);
    step(`waiting for echo of ${describe(msg)}`);
    expectSame(await this.recv(what), msg, what);
  }

  async close(code, reason) {
    step(`closing with ${code ?? '(no code)'}`);
    this.ws.close(code, reason);
    return withTimeout(this.closed, 10000, "the server's close frame");
  }

  async closeNormally() {
    const info = await this.close(1000);
    expect(info.code === 1000, `sent close 1000, server answered ${JSON.stringify(info)}`);
  }

  // The server's answer to our extension offer. `ws` implements no
  // extension yet, so it must answer none, and the echoes only work if it
  // really did not negotiate one. Once it implements permessage-deflate it
  // may accept that (and only that); the echo tests then exercise it.
  checkExtensions() {
    const h = (this.responseHeaders && this.responseHeaders['sec-websocket-extensions']) || '';
    for (const item of h.split(',').filter((x) => x.trim())) {
      const name = item.split(';')[0].trim();
      expect(name === 'permessage-deflate', `server answered Sec-WebSocket-Extensions: ${h}, which was not offered`);
    }
    return h;
  }
}

// A Node ws server on 127.0.0.1, kernel-chosen port.
async function nodeServer(onConnection, options = {}) {
  const errors = [];
  const wss = new WebSocketServer({ host: HOST, port: 0, ...options });
  defer(() => new Promise((resolve) => {
    for (const c of wss.clients) c.terminate();
    wss.close(() => resolve());
  }));
  wss.on('connection', (ws, req) => {
    ws.on('error', (e) => errors.push(`server socket error: ${e.message}`));
    Promise.resolve()
      .then(() => onConnection(ws, req))
      .catch((e) => errors.push(`server handler: ${e.message}`));
  });
  await withTimeout(new Promise((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  }), 5000, 'node server listening');
  return { wss, url: `ws://${HOST}:${wss.address().port}/`, errors, check() { expect(!errors.length, errors.join('; ')); } };
}

function echoOn(ws, record) {
  ws.on('message', (data, isBinary) => {
    if (record) record.push({ data, isBinary });
    ws.send(data, { binary: isBinary });
  });
}

function expectLines(got, want) {
  for (let i = 0; i < Math.min(got.length, want.length); i++) {
    if (got[i] !== want[i]) {
      throw new Failure(`stdout line ${i}: sent ${JSON.stringify(want[i].slice(0, 60))} (${want[i].length} chars), printed ${JSON.stringify(got[i].slice(0, 60))} (${got[i].length} chars)`);
    }
  }
  expect(got.length === want.length, `expected ${want.length} lines on stdout, got ${got.length}: last ${JSON.stringify(got.slice(-3))}`);
}

function expectClosed(err, code, reason) {
  const want = `closed: ${code}` + (reason !== undefined ? ` ${reason}` : '');
  const ok = err.split('\n').some((l) => l === want || l.startsWith(want + ' ') || l.trimEnd() === want);
  expect(ok, `expected ${JSON.stringify(want)} on stderr, stderr was ${JSON.stringify(err.trim())}`);
}

const expectStatus = (r, want0 = true) => {
  if (want0) expect(r.code === 0, `exit status ${r.code}, stderr ${JSON.stringify(r.err.trim())}`);
  else expect(r.code !== 0, `expected a non-zero exit status, got 0; stderr ${JSON.stringify(r.err.trim())}`);
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

const test = tests(PREFIX);

// ---- Part 1: Node client against `ws echo` --------------------------------

for (const [label, pmd] of [['deflate-offered', true], ['no-compression', false]]) {
  for (const typ of ['text', 'binary']) {
    for (const kind of ['compressible', 'random']) {
      for (const n of SIZES) {
        test(`client/${label}/${typ}-${sizeName(n)}-${kind}`, async () => {
          const msg = payload(kind, typ, n);
          const srv = await startEcho();
          const c = await Client.open(srv.url, undefined, { perMessageDeflate: pmd });
          c.checkExtensions();
          await c.roundtrip(msg);
          await c.roundtrip(msg, 'second echo');
          await c.closeNormally();
        });
      }
    }
  }
}

test('client/deflate-offered', async () => {
  const srv = await startEcho();
  const c = await Client.open(srv.url); // Node offers permessage-deflate by default
  const h = c.checkExtensions();
  process.stderr.write(`# ws echo answered the deflate offer with ${h || 'no extension'} (node: ${JSON.stringify(c.ws.extensions)})\n`);
  await c.roundtrip('a'.repeat(10000));
  await c.roundtrip(payload('random', 'binary', 65536));
  await c.closeNormally();
});

test('client/unicode-text', async () => {
  const srv = await startEcho();
  const c = await Client.open(srv.url);
  for (const s of UNICODE_SAMPLES) await c.roundtrip(s);
  await c.closeNormally();
});

test('client/ping-payload', async () => {
  const srv = await startEcho();
  const c = await Client.open(srv.url);
  for (const data of [Buffer.from('hello ping'), Buffer.alloc(0), Buffer.from([...Array(125).keys()]), Buffer.from('unicode pïng ✓')]) {
    step(`ping with ${data.length}-byte payload, waiting for the pong`);
    c.ws.ping(data);
    let pong;
    try {
      pong = await c.nextPong();
    } catch {
      throw new Failure(`sent ping with ${data.length}-byte payload, no pong within 5 s`);
    }
    expect(pong.equals(data), `ping payload ${describe(data, true)}, pong payload ${describe(pong, true)}`);
  }
  await c.roundtrip('still alive after pings');
  await c.closeNormally();
});

test('client/unsolicited-pong-ignored', async () => {
  const srv = await startEcho();
  const c = await Client.open(srv.url);
  c.ws.pong(Buffer.from('unsolicited'));
  await c.roundtrip('after unsolicited pong');
  await c.closeNormally();
});

test('client/pipelined-1000', async () => {
  const srv = await startEcho();
  const c = await Client.open(srv.url);
  const msgs = [...Array(1000).keys()].map((i) => (i % 3 ? `message ${i}` : Buffer.from(`bin ${i}`)));
  step('sending 1000 messages');
  for (const m of msgs) c.ws.send(m);
  for (let i = 0; i < msgs.length; i++) {
    step(`receiving echo ${i} of 1000`);
    expectSame(await c.recv(), msgs[i], `echo #${i} of 1000 (order)`);
  }
  await c.closeNormally();
});

test('client/pipelined-1000-mixed-sizes', async () => {
  const r = rng(42);
  const msgs = [...Array(1000).keys()].map((i) => (i % 2 ? randomBytes(randInt(r, 0, 8192)) : randText(randInt(r, 0, 8192), i)));
  const srv = await startEcho();
  const c = await Client.open(srv.url);
  for (const m of msgs) c.ws.send(m);
  for (let i = 0; i < msgs.length; i++) {
    step(`receiving echo ${i} of 1000`);
    expectSame(await c.recv(), msgs[i], `echo #${i} (order)`);
  }
  await c.closeNormally();
});

test('client/fragmented-text', async () => {
  const srv = await startEcho();
  const c = await Client.open(srv.url);
  c.ws.send('frag', { fin: false });
  c.ws.send('ment', { fin: false });
  c.ws.send('ed ✓', { fin: true });
  expectSame(await c.recv(), 'fragmented ✓', 'reassembled fragmented text');
  await c.closeNormally();
});

test('client/fragmented-binary', async () => {
  const srv = await startEcho();
  const c = await Client.open(srv.url);
  const parts = [...Array(20).keys()].map((i) => Buffer.alloc(i * 10, i));
  parts.forEach((p, i) => c.ws.send(p, { binary: true, fin: i === parts.length - 1 }));
  expectSame(await c.recv(), Buffer.concat(parts), 'reassembled fragmented binary');
  await c.closeNormally();
});

test('client/fragmented-utf8-split-across-frames', async () => {
  const raw = Buffer.from('a😀b€c', 'utf8');
  const parts = [raw.subarray(0, 2), raw.subarray(2, 4), raw.subarray(4, 7), raw.subarray(7)];
  const srv = await startEcho();
  const c = await Client.open(srv.url, undefined, { perMessageDeflate: false });
  parts.forEach((p, i) => c.ws.send(p, { binary: false, fin: i === parts.length - 1 }));
  expectSame(await c.recv(), 'a😀b€c', 'text whose characters straddle fragments');
  await c.closeNormally();
});

test('client/fragmented-with-ping-between', async () => {
  const srv = await startEcho();
  const c = await Client.open(srv.url);
  for (let i = 0; i < 5; i++) {
    c.ws.send(`part${i};`, { fin: i === 4 });
    c.ws.ping(Buffer.from(`mid${i}`));
  }
  expectSame(await c.recv(), [0, 1, 2, 3, 4].map((i) => `part${i};`).join(''), 'fragmented message with pings inside');
  for (let i = 0; i < 5; i++) {
    const p = await c.nextPong();
    expect(p.toString() === `mid${i}`, `pong ${i} payload ${JSON.stringify(p.toString())}, expected mid${i}`);
  }
  await c.closeNormally();
});

test('client/fragmented-1MiB-in-64KiB-frames', async () => {
  const data = payload('random', 'binary', 1 << 20);
  const srv = await startEcho();
  const c = await Client.open(srv.url);
  for (let i = 0; i < data.length; i += 65536) c.ws.send(data.subarray(i, i + 65536), { binary: true, fin: i + 65536 >= data.length });
  expectSame(await c.recv(), data, '1 MiB in 16 fragments');
  await c.closeNormally();
});

test('client/close-4000-with-reason', async () => {
  const srv = await startEcho();
  const c = await Client.open(srv.url);
  await c.roundtrip('before close');
  const info = await c.close(4000, 'custom reason');
  expect(info.code === 4000, `sent close 4000 'custom reason', server answered ${JSON.stringify(info)}`);
});

test('client/close-without-status', async () => {
  // An empty close frame: the server must answer with a close frame too
  // (which Node reports as 1005, no status).
  const srv = await startEcho();
  const c = await Client.open(srv.url);
  const info = await c.close();
  expect(info.code === 1005 || info.code === 1000, `sent an empty close frame, server answered ${JSON.stringify(info)}`);
});

// No 'subprotocol offered, none selected' client test here: RFC 6455
// lets a server select none, but Node's client then fails the handshake
// ("Server sent no subprotocol"). The Python suite covers that case.

test('client/invalid-utf8-text-closed-1007', async () => {
  // Not interop as such: a peer sending broken text. RFC 6455 §8.1: the
  // server must fail the connection, with close code 1007.
  const srv = await startEcho();
  const c = await Client.open(srv.url, undefined, { perMessageDeflate: false });
  await c.roundtrip('valid first');
  step('sending a text frame holding invalid UTF-8');
  c.ws.send(Buffer.from([0x6f, 0x6b, 0x20, 0xff, 0xfe]), { binary: false });
  const info = await withTimeout(c.closed, 10000, 'close after invalid UTF-8');
  expect(info.code === 1007, `sent text with invalid UTF-8, server closed with ${JSON.stringify(info)}, expected 1007`);
});

test('client/concurrent-20-connections', async () => {
  const srv = await startEcho();
  step('20 concurrent connections, 50 echoes each');
  await Promise.all([...Array(20).keys()].map(async (k) => {
    const c = await Client.open(srv.url);
    for (let i = 0; i < 50; i++) await c.roundtrip(`conn ${k} msg ${i}`);
    await c.closeNormally();
  }));
});

test('client/server-sigterm-closes-1001', async () => {
  const srv = await startEcho();
  const c = await Client.open(srv.url);
  await c.roundtrip('before shutdown');
  step('SIGTERM to ws echo, waiting for close 1001');
  srv.proc.kill('SIGTERM');
  const info = await withTimeout(c.closed, 10000, 'close after SIGTERM');
  expect(info.code === 1001, `after SIGTERM expected close 1001, got ${JSON.stringify(info)}`);
  const { code, sig } = await withTimeout(srv.exited, 10000, 'ws echo exit after SIGTERM');
  expect(code === 0, `ws echo exited with ${code ?? sig} after SIGTERM; ${srv.log()}`);
});

// ---- Part 2: Node servers against `ws connect` ----------------------------

test('connect/echo-lines', async () => {
  const lines = ['hello', '', 'second line', '  spaces  around  ', 'x'.repeat(100000), ...UNICODE_SAMPLES.slice(0, 5)];
  const seen = [];
  const srv = await nodeServer((ws) => echoOn(ws, seen), { perMessageDeflate: true });
  const r = await runClient(srv.url, { lines });
  srv.check();
  const seenText = seen.map((m) => (m.isBinary ? `<binary ${m.data.length}>` : m.data.toString()));
  expect(JSON.stringify(seenText) === JSON.stringify(lines), `server received ${JSON.stringify(seenText.map((s) => s.slice(0, 20)))}`);
  expectLines(r.out, lines);
  expectClosed(r.err, 1000);
  expectStatus(r);
});

test('connect/pipelined-1000-lines', async () => {
  const lines = [...Array(1000).keys()].map((i) => `line ${i} ✓`);
  const srv = await nodeServer((ws) => echoOn(ws));
  const r = await runClient(srv.url, { lines });
  srv.check();
  expectLines(r.out, lines);
  expectClosed(r.err, 1000);
  expectStatus(r);
});

test('connect/binary-lines', async () => {
  const lines = ['bin one', 'bïn two', ''];
  const seen = [];
  const srv = await nodeServer((ws) => echoOn(ws, seen));
  const r = await runClient(srv.url, { lines, args: ['--binary'] });
  srv.check();
  expect(seen.length === 3 && seen.every((m, i) => m.isBinary && m.data.equals(Buffer.from(lines[i]))),
    `with --binary the server received ${JSON.stringify(seen.map((m) => [m.isBinary, m.data.toString()]))}`);
  expectLines(r.out, lines);
  expectStatus(r);
});

test('connect/deflate-capable-server', async () => {
  // `ws connect` offers permessage-deflate and Node's ws accepts it; the
  // echoes come back intact through both codecs.
  let ext, negotiated;
  const srv = await nodeServer((ws, req) => {
    ext = req.headers['sec-websocket-extensions'];
    negotiated = ws.extensions;
    echoOn(ws);
  }, { perMessageDeflate: { threshold: 0 } });
  const lines = ['plain', 'a'.repeat(50000), compressibleText(20000), ...UNICODE_SAMPLES.slice(0, 3)];
  const r = await runClient(srv.url, { lines });
  srv.check();
  process.stderr.write(`# ws connect offered ${JSON.stringify(ext ?? null)}, negotiated ${JSON.stringify(negotiated ?? null)}\n`);
  expect(typeof ext === 'string' && ext.includes('permessage-deflate'), `ws connect did not offer deflate: ${ext}`);
  expect(typeof negotiated === 'string' && negotiated.includes('permessage-deflate'), `deflate not negotiated: ${negotiated}`);
  expectLines(r.out, lines);
  expectStatus(r);
});

test('connect/subprotocol', async () => {
  let offered;
  const srv = await nodeServer((ws, req) => {
    offered = req.headers['sec-websocket-protocol'];
    ws.send(`subprotocol=${ws.protocol}`);
    echoOn(ws);
  }, { handleProtocols: (protocols) => (protocols.has('chat.v2') ? 'chat.v2' : false) });
  const r = await runClient(srv.url, { lines: ['hi'], args: ['--protocol', 'chat.v1', '--protocol', 'chat.v2'], waitForLines: 2 });
  srv.check();
  expect(offered && offered.split(',').map((s) => s.trim()).join(',') === 'chat.v1,chat.v2', `Sec-WebSocket-Protocol offered ${offered}`);
  expectLines(r.out, ['subprotocol=chat.v2', 'hi']);
  expect(r.err.includes('subprotocol chat.v2'), `client did not report subprotocol chat.v2: ${JSON.stringify(r.err.trim())}`);
  expectStatus(r);
});

test('connect/header-and-origin', async () => {
  const srv = await nodeServer((ws, req) => {
    ws.send(JSON.stringify({
      authorization: req.headers.authorization,
      origin: req.headers.origin,
      xMulti: req.headers['x-multi'],
      path: req.url,
    }));
    echoOn(ws);
  });
  const r = await runClient(srv.url + 'some/path?q=1', {
    lines: ['x'],
    args: ['--header', 'Authorization: Bearer x', '--header', 'X-Multi: one, two', '--origin', 'http://example.test'],
    waitForLines: 2,
  });
  srv.check();
  expect(r.out.length >= 1, `no output; stderr ${JSON.stringify(r.err.trim())}`);
  const want = { authorization: 'Bearer x', origin: 'http://example.test', xMulti: 'one, two', path: '/some/path?q=1' };
  expect(r.out[0] === JSON.stringify(want), `server saw ${r.out[0]}, expected ${JSON.stringify(want)}`);
  expectLines(r.out.slice(1), ['x']);
  expectStatus(r);
});

// The code the server's socket received in the client's close frame; Node
// reports 1006 when the TCP connection ended without one.
function peerCloseCode(ws) {
  return new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

async function expectClientAnswered(answerPromise, sent, want) {
  const a = await withTimeout(answerPromise, 10000, 'server-side close event');
  expect(a.code !== 1006, `server sent ${sent}; no close frame came back from the client, the TCP connection just ended (Node reports 1006)`);
  if (want !== undefined) expect(a.code === want, `server sent ${sent}; the client answered ${JSON.stringify(a)}`);
}

test('connect/server-closes-1001-bye', async () => {
  let answer;
  const srv = await nodeServer((ws) => { answer = peerCloseCode(ws); ws.send('hello'); ws.close(1001, 'bye'); });
  const r = await runClient(srv.url, { keepStdinOpen: true });
  srv.check();
  expectLines(r.out, ['hello']);
  expectClosed(r.err, 1001, 'bye');
  expectStatus(r);
  await expectClientAnswered(answer, "close 1001 'bye'", 1001);
});

test('connect/server-closes-4001-nonzero-exit', async () => {
  let answer;
  const srv = await nodeServer((ws) => { answer = peerCloseCode(ws); ws.close(4001, 'custom'); });
  const r = await runClient(srv.url, { keepStdinOpen: true });
  srv.check();
  expectClosed(r.err, 4001, 'custom');
  expectStatus(r, false);
  await expectClientAnswered(answer, "close 4001 'custom'", 4001);
});

test('connect/server-closes-without-status', async () => {
  let answer;
  const srv = await nodeServer((ws) => { answer = peerCloseCode(ws); ws.send('hi'); ws.close(); });
  const r = await runClient(srv.url, { keepStdinOpen: true });
  srv.check();
  expectLines(r.out, ['hi']);
  expectClosed(r.err, 1005);
  await expectClientAnswered(answer, 'an empty close frame');
});

test('connect/client-close-answered', async () => {
  // stdin EOF: the client sends close 1000 and the server answers it.
  let answer;
  const srv = await nodeServer((ws) => { answer = peerCloseCode(ws); echoOn(ws); });
  const r = await runClient(srv.url, { lines: ['one'] });
  srv.check();
  expectLines(r.out, ['one']);
  expectClosed(r.err, 1000);
  expectStatus(r);
  const a = await withTimeout(answer, 10000, 'server-side close event');
  expect(a.code === 1000, `the server received close ${JSON.stringify(a)} from the client, expected 1000`);
});

test('connect/ping-inside-fragmented-message', async () => {
  const results = [];
  const srv = await nodeServer(async (ws) => {
    for (let i = 0; i < 4; i++) {
      ws.send(`f${i};`, { fin: i === 3 });
      if (i === 3) break;
      const pong = new Promise((resolve) => ws.once('pong', resolve));
      ws.ping(Buffer.from(`mid${i}`));
      try {
        const got = await withTimeout(pong, 5000, 'pong');
        results.push(got.toString() === `mid${i}` ? 'ok' : `pong ${JSON.stringify(got.toString())} to ping mid${i}`);
      } catch {
        results.push(`no pong to ping mid${i} sent between fragments`);
      }
    }
    ws.close(1000);
  });
  const r = await runClient(srv.url, { keepStdinOpen: true });
  srv.check();
  expect(results.join() === 'ok,ok,ok', `pings between fragments: ${JSON.stringify(results)}`);
  expectLines(r.out, ['f0;f1;f2;f3;']);
  expectStatus(r);
});

test('connect/large-line-1MiB', async () => {
  const line = payload('random', 'text', 1 << 20).replace(/[\r\n]/g, ' ');
  const seen = [];
  const srv = await nodeServer((ws) => echoOn(ws, seen));
  const r = await runClient(srv.url, { lines: [line, 'after'] });
  srv.check();
  expect(seen.length === 2 && !seen[0].isBinary && seen[0].data.toString() === line,
    `server received ${seen.map((m) => describe(m.data, m.isBinary)).join(', ')}; sent ${describe(line)}`);
  expectLines(r.out, [line, 'after']);
  expectStatus(r);
});

test('connect/invalid-utf8-from-server', async () => {
  // A server sending broken text: the client must fail the connection with
  // 1007 (RFC 6455 §8.1) and exit non-zero.
  let answer;
  const srv = await nodeServer((ws) => {
    answer = peerCloseCode(ws);
    ws.send('valid first');
    ws.send(Buffer.from([0x62, 0x61, 0x64, 0x20, 0xff, 0xfe]), { binary: false });
  });
  const r = await runClient(srv.url, { keepStdinOpen: true });
  expectLines(r.out, ['valid first']);
  expectStatus(r, false);
  const a = await withTimeout(answer, 10000, 'server-side close event');
  expect(a.code === 1007, `the client answered invalid UTF-8 with ${a.code === 1006 ? 'no close frame (1006)' : JSON.stringify(a)}, expected close 1007; stderr ${JSON.stringify(r.err.trim())}`);
});

test('connect/server-ping-gets-pong', async () => {
  const results = [];
  const srv = await nodeServer(async (ws) => {
    for (const data of [Buffer.from('server ping'), Buffer.alloc(0), Buffer.from([...Array(125).keys()])]) {
      const pong = new Promise((resolve) => ws.once('pong', resolve));
      ws.ping(data);
      try {
        const got = await withTimeout(pong, 5000, 'pong');
        results.push(got.equals(data) ? 'ok' : `ping ${describe(data, true)} answered by pong ${describe(got, true)}`);
      } catch {
        results.push(`no pong to ${data.length}-byte ping within 5 s`);
      }
    }
    ws.send('pings done');
    ws.close(1000);
  });
  const r = await runClient(srv.url, { keepStdinOpen: true });
  srv.check();
  expect(results.join() === 'ok,ok,ok', `server pings: ${JSON.stringify(results)}`);
  expectLines(r.out, ['pings done']);
  expectStatus(r);
});

test('connect/server-sends-fragmented-and-large', async () => {
  const big = payload('random', 'text', 1 << 20).replace(/[\r\n]/g, ' ');
  const raw = Buffer.from('split ☃ and 😀 here', 'utf8');
  const srv = await nodeServer((ws) => {
    ws.send('frag', { fin: false });
    ws.send('mented', { fin: true });
    ws.send(raw.subarray(0, 7), { binary: false, fin: false });
    ws.send(raw.subarray(7, 15), { binary: false, fin: false });
    ws.send(raw.subarray(15), { binary: false, fin: true });
    ws.send(big);
    const bigBuf = Buffer.from(big, 'utf8');
    for (let i = 0; i < bigBuf.length; i += 100000) ws.send(bigBuf.subarray(i, i + 100000), { binary: false, fin: i + 100000 >= bigBuf.length });
    ws.close(1000);
  });
  const r = await runClient(srv.url, { keepStdinOpen: true });
  srv.check();
  expectLines(r.out, ['fragmented', 'split ☃ and 😀 here', big, big]);
  expectStatus(r);
});

test('connect/handshake-refused-403', async () => {
  const srv = await nodeServer((ws) => echoOn(ws), { verifyClient: (_info, cb) => cb(false, 403, 'Forbidden') });
  const r = await runClient(srv.url, { lines: ['never sent'], waitForLines: 1 });
  expectStatus(r, false);
  expect(r.out.length === 0, `printed ${JSON.stringify(r.out)}`);
});

test('connect/server-drops-tcp-without-close', async () => {
  const srv = await nodeServer((ws) => { ws.send('then vanish', () => setTimeout(() => ws.terminate(), 50)); });
  const r = await runClient(srv.url, { keepStdinOpen: true });
  expectLines(r.out, ['then vanish']);
  expectStatus(r, false);
});

// ---------------------------------------------------------------------------

process.stderr.write(`# node ${process.version}, ws ${wsVersion}, ws binary ${WS_BIN}\n`);
const failed = await runTests({ filter: FILTER, timeoutMs: TEST_TIMEOUT });
process.exit(failed ? 1 : 0);
