// Interop tests between a real headless Chromium and our `ws echo` server.
//
// Browsers are the main WebSocket peer, so the server has to work with one.
// This suite launches the system's Chromium (Debian's package) through
// playwright-core, loads a tiny page from a Node http server on 127.0.0.1
// (so the page has a real http origin and Chromium sends a real Origin
// header), and runs the browser's own `WebSocket` API inside that page
// against `ws echo`. Payloads are made and checked inside the page, byte
// for byte; only verdicts and a few numbers come back to Node.
//
// Run through tests/interop/run.sh, which installs Chromium and
// playwright-core and builds `ws`. Standalone:
//
//   WS_BIN=path/to/ws WS_INTEROP_PLAYWRIGHT_DIR=dir/with/node_modules \
//     WS_INTEROP_CHROMIUM=/usr/bin/chromium node tests/interop/chromium_interop.mjs
//
// Prints one line per test, `ok NAME` or `FAIL NAME: reason`, and exits 1
// if any test failed. Every test is bounded by WS_INTEROP_TEST_TIMEOUT
// seconds (default 20). Only 127.0.0.1 is used; ports are kernel-chosen.
// WS_INTEROP_FILTER=substring runs only the matching tests.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import { accessSync, constants as fsConstants } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import {
  Failure, defer, expect, runTests, setupFail as harnessSetupFail, step, stepNow, tests, withTimeout,
} from './harness.mjs';

const WS_BIN = process.env.WS_BIN;
const PLAYWRIGHT_DIR = process.env.WS_INTEROP_PLAYWRIGHT_DIR;
const CHROMIUM = process.env.WS_INTEROP_CHROMIUM || '/usr/bin/chromium';
const TEST_TIMEOUT = Number(process.env.WS_INTEROP_TEST_TIMEOUT || 20) * 1000;
const FILTER = process.env.WS_INTEROP_FILTER || '';
const PREFIX = 'chromium';
const HOST = '127.0.0.1';

const setupFail = (reason) => harnessSetupFail(PREFIX, reason);

for (const [what, file] of [['WS_BIN', WS_BIN], ['WS_INTEROP_CHROMIUM', CHROMIUM]]) {
  if (!file) setupFail(`${what} is not set`);
  try {
    accessSync(file, fsConstants.X_OK);
  } catch {
    setupFail(`${what}=${file} is not an executable`);
  }
}
if (!PLAYWRIGHT_DIR) setupFail('WS_INTEROP_PLAYWRIGHT_DIR is not set');
let chromium, playwrightVersion;
try {
  const require = createRequire(path.join(path.resolve(PLAYWRIGHT_DIR), 'package.json'));
  ({ chromium } = require('playwright-core'));
  playwrightVersion = require('playwright-core/package.json').version;
} catch (e) {
  setupFail(`cannot load playwright-core from ${PLAYWRIGHT_DIR}: ${e.message}`);
}

// ---------------------------------------------------------------------------
// Node-side helpers
// ---------------------------------------------------------------------------

const note = (text) => process.stderr.write(`# ${text}\n`);

// Start `ws echo --listen 127.0.0.1:0 ARGS`; resolves once it prints its
// address. Stopped after the current test unless `keep` (the shared one).
async function startEcho(args = [], { keep = false } = {}) {
  step(`starting ws echo ${args.join(' ')}`);
  const proc = spawn(WS_BIN, ['echo', '--listen', `${HOST}:0`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr = (stderr + d.toString()).slice(-600); });
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15000);
      await exited;
      clearTimeout(t);
    }
  };
  const srv = { proc, exited, stop, log: () => `ws echo stderr: ${JSON.stringify(stderr.trim())}` };
  if (!keep) defer(stop);
  srv.url = await withTimeout(new Promise((resolve, reject) => {
    let buf = '';
    proc.stdout.on('data', (d) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        if (line.startsWith('listening on ws://')) resolve(`${line.slice('listening on '.length)}/`);
        else reject(new Failure(`ws echo printed ${JSON.stringify(line)} instead of 'listening on ws://...'`));
      }
    });
    proc.on('error', (e) => reject(new Failure(`cannot start ws echo: ${e.message}`)));
    exited.then(({ code, sig }) => reject(new Failure(`ws echo exited with ${code ?? sig} before listening; ${srv.log()}`)));
  }), 10000, "ws echo 'listening on' line");
  return srv;
}

// A transparent TCP relay in front of a ws:// URL that records the opening
// handshake as it crossed the wire (request and response heads) and counts
// the bytes that followed in each direction.
async function startRelay(targetUrl) {
  const target = new URL(targetUrl);
  const rec = { connections: 0, request: '', response: '', upBytes: 0, downBytes: 0 };
  const sockets = new Set();
  // Feed one direction's bytes: the head until its blank line, then counts.
  const tap = (headKey, countKey) => {
    let head = Buffer.alloc(0);
    let inHead = true;
    return (d) => {
      if (!inHead) { rec[countKey] += d.length; return; }
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      inHead = false;
      if (!rec[headKey]) rec[headKey] = head.subarray(0, end).toString('latin1');
      rec[countKey] += head.length - end - 4;
    };
  };
  const server = net.createServer((client) => {
    rec.connections++;
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) sockets.add(s);
    client.on('data', tap('request', 'upBytes'));
    upstream.on('data', tap('response', 'downBytes'));
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await withTimeout(new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, resolve);
  }), 5000, 'relay listening');
  defer(() => new Promise((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return { url: `ws://${HOST}:${server.address().port}/`, rec };
}

// Header fields of a recorded head, lower-cased names; repeated fields are
// joined with ', ' (RFC 9110 §5.3).
function headerFields(head) {
  const fields = {};
  for (const line of head.split('\r\n').slice(1)) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    fields[name] = name in fields ? `${fields[name]}, ${value}` : value;
  }
  return fields;
}

// ---------------------------------------------------------------------------
// The page: a tiny http server on 127.0.0.1 and the helpers it carries
// ---------------------------------------------------------------------------

// Runs inside the page (its source is served in a <script>); defines
// `window.lib`. Every wait in here has its own timeout, so a test fails
// with a message saying what it was waiting for.
function pageLib() {
  const within = (promise, ms, what) => {
    let timer;
    return Promise.race([
      promise,
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms / 1000} s`)), ms); }),
    ]).finally(() => clearTimeout(timer));
  };

  const utf8Length = (s) => new TextEncoder().encode(s).length;

  const describe = (v) => {
    if (v === null || v === undefined) return 'nothing';
    if (typeof v === 'string') return `text of ${v.length} UTF-16 units (${utf8Length(v)} UTF-8 bytes) starting ${JSON.stringify(v.slice(0, 24))}`;
    if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) {
      const b = v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      return `binary of ${b.length} bytes starting [${Array.from(b.subarray(0, 12)).join(',')}]`;
    }
    return `a ${Object.prototype.toString.call(v)}`;
  };

  // Compare what came back with what was sent: same type, same content.
  const same = (got, want, what) => {
    if (typeof want === 'string') {
      if (typeof got !== 'string') throw new Error(`${what}: sent ${describe(want)}, got back ${describe(got)}`);
      if (got === want) return;
      let i = 0;
      while (i < Math.min(got.length, want.length) && got[i] === want[i]) i++;
      throw new Error(`${what}: sent ${describe(want)}, got back ${describe(got)}; first difference at UTF-16 unit ${i}`);
    }
    const w = new Uint8Array(want.buffer ?? want, want.byteOffset ?? 0, want.byteLength);
    if (!(got instanceof ArrayBuffer)) throw new Error(`${what}: sent ${describe(w)}, got back ${describe(got)}`);
    const g = new Uint8Array(got);
    let i = 0;
    while (i < Math.min(g.length, w.length) && g[i] === w[i]) i++;
    if (i === g.length && i === w.length) return;
    throw new Error(`${what}: sent ${describe(w)}, got back ${describe(g)}; first difference at byte ${i}`);
  };

  // Deterministic PRNG (mulberry32), so text payloads reproduce.
  const rng = (seed) => {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  };
  const randInt = (r, lo, hi) => lo + Math.floor(r() * (hi - lo + 1));

  const randomBytes = (n) => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
    return b;
  };

  // Bytes with structure but no short period: compressible, not trivially.
  const patternBytes = (n, seed) => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = (Math.imul(i, 2654435761) >>> 24) ^ (i >>> 8) ^ seed;
    return b;
  };

  // Random text of exactly n UTF-8 bytes mixing 1- to 4-byte characters.
  const randText = (n, seed) => {
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
  };

  // A JSON document of about n bytes: an array of small records, as an
  // application would send.
  const jsonText = (n) => {
    const rows = [];
    let len = 2;
    for (let i = 0; len < n; i++) {
      const row = JSON.stringify({
        id: i,
        user: `user-${i % 997}`,
        email: `user${i % 997}@example.test`,
        active: i % 3 === 0,
        score: ((i * 37) % 1000) / 10,
        tags: ['alpha', 'beta', 'gamma', 'délta'].slice(0, (i % 4) + 1),
        updated: new Date(Date.UTC(2026, 0, 1) + i * 60000).toISOString(),
      });
      rows.push(row);
      len += row.length + 1;
    }
    return `[${rows.join(',')}]`;
  };

  class Conn {
    static async open(url, protocols) {
      const c = new Conn();
      c.url = url;
      c.ws = protocols === undefined ? new WebSocket(url) : new WebSocket(url, protocols);
      c.ws.binaryType = 'arraybuffer';
      c.queue = [];
      c.waiters = [];
      c.errors = 0;
      c.ws.onerror = () => { c.errors++; };
      c.ws.onmessage = (e) => c.push(e.data);
      c.closed = new Promise((resolve) => {
        c.ws.onclose = (e) => {
          c.closeInfo = { code: e.code, reason: e.reason, wasClean: e.wasClean };
          resolve(c.closeInfo);
          c.push(null);
        };
      });
      await within(new Promise((resolve, reject) => {
        c.ws.onopen = resolve;
        c.closed.then((info) => reject(new Error(`connecting to ${url} failed: close event ${JSON.stringify(info)}`)));
      }), 10000, `opening handshake with ${url}`);
      return c;
    }

    push(m) {
      const w = this.waiters.shift();
      if (w) w(m);
      else this.queue.push(m);
    }

    async recv(what = 'message', ms = 10000) {
      const p = this.queue.length ? Promise.resolve(this.queue.shift()) : new Promise((r) => this.waiters.push(r));
      const m = await within(p, ms, what);
      if (m === null) {
        this.queue.push(null);
        throw new Error(`connection closed (close event ${JSON.stringify(this.closeInfo)}) while waiting for ${what}`);
      }
      return m;
    }

    async roundtrip(msg, what = 'echo') {
      this.ws.send(msg);
      same(await this.recv(`${what} of ${describe(msg)}`), msg, what);
    }

    // Start the closing handshake; resolves to the close event.
    close(code, reason) {
      if (code === undefined) this.ws.close();
      else if (reason === undefined) this.ws.close(code);
      else this.ws.close(code, reason);
      return within(this.closed, 10000, `close event after close(${code ?? ''})`);
    }

    async closeNormally() {
      const info = await this.close(1000);
      if (info.code !== 1000 || !info.wasClean) throw new Error(`close(1000) ended in close event ${JSON.stringify(info)}, expected code 1000, wasClean`);
      return info;
    }
  }

  window.lib = { within, describe, same, randomBytes, patternBytes, randText, jsonText, Conn, utf8Length };
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>ws interop</title></head>
<body><script>(${pageLib.toString()})();</script></body></html>
`;

async function startPageServer() {
  const server = http.createServer((req, res) => {
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(PAGE);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await withTimeout(new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, resolve);
  }), 5000, 'page server listening');
  return { server, origin: `http://${HOST}:${server.address().port}` };
}

// ---------------------------------------------------------------------------
// Browser plumbing
// ---------------------------------------------------------------------------

let browser, context, pageServer, shared;

// A fresh page on the http origin, closed after the test.
async function newPage() {
  step('opening a page');
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  defer(() => page.close());
  await page.goto(`${pageServer.origin}/`, { timeout: 10000 });
  const ready = await page.evaluate(() => typeof window.lib === 'object');
  expect(ready, 'the page loaded but its helpers did not run');
  return {
    page,
    problems,
    // Run fn(arg) in the page; an exception thrown there becomes a Failure
    // with its message (and the browser's console errors, which is where
    // Chromium explains failed handshakes).
    async run(fn, arg, what = 'the test in the page') {
      step(`running ${what}`);
      try {
        return await page.evaluate(fn, arg);
      } catch (e) {
        const msg = String(e && e.message).split('\n')[0].replace(/^page\.evaluate: (Error: )?/, '');
        const extra = problems.length ? `; browser said: ${problems.slice(-3).join(' | ')}` : '';
        throw new Failure(`${msg}${extra}`);
      }
    },
  };
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

const test = tests(PREFIX);

test('handshake-on-the-wire', async () => {
  // What Chromium really sends and what `ws echo` answers, seen by a
  // transparent relay: a real Origin, the deflate offer, a correct accept.
  const relay = await startRelay(shared.url);
  const p = await newPage();
  const ext = await p.run(async (url) => {
    const c = await window.lib.Conn.open(url);
    await c.roundtrip('through the relay');
    await c.closeNormally();
    return c.ws.extensions;
  }, relay.url);
  const { request, response } = relay.rec;
  note(`Chromium's request: ${JSON.stringify(request)}`);
  note(`ws echo's response: ${JSON.stringify(response)}`);
  const req = headerFields(request);
  const res = headerFields(response);
  expect(/^GET \/ HTTP\/1\.1$/.test(request.split('\r\n')[0]), `request line ${JSON.stringify(request.split('\r\n')[0])}`);
  expect(req.origin === pageServer.origin, `Origin ${JSON.stringify(req.origin)}, expected ${pageServer.origin}`);
  expect(req['sec-websocket-version'] === '13', `Sec-WebSocket-Version ${JSON.stringify(req['sec-websocket-version'])}`);
  expect(/permessage-deflate/.test(req['sec-websocket-extensions'] || ''), `Chromium did not offer permessage-deflate: ${JSON.stringify(req['sec-websocket-extensions'])}`);
  expect(/^HTTP\/1\.1 101( |$)/.test(response.split('\r\n')[0]), `status line ${JSON.stringify(response.split('\r\n')[0])}`);
  expect((res.upgrade || '').toLowerCase() === 'websocket', `Upgrade ${JSON.stringify(res.upgrade)}`);
  expect((res.connection || '').toLowerCase().split(/\s*,\s*/).includes('upgrade'), `Connection ${JSON.stringify(res.connection)}`);
  const accept = createHash('sha1').update(`${req['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  expect(res['sec-websocket-accept'] === accept, `Sec-WebSocket-Accept ${JSON.stringify(res['sec-websocket-accept'])}, expected ${accept}`);
  expect(res['sec-websocket-extensions'] === ext, `the server answered Sec-WebSocket-Extensions ${JSON.stringify(res['sec-websocket-extensions'])} but the page reports ws.extensions ${JSON.stringify(ext)}`);
  expect(!('sec-websocket-protocol' in res), `the server selected subprotocol ${JSON.stringify(res['sec-websocket-protocol'])}, none was offered`);
});

// ---- text ------------------------------------------------------------------

test('text-ascii', async () => {
  const p = await newPage();
  await p.run(async (url) => {
    const c = await window.lib.Conn.open(url);
    const printable = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('');
    for (const s of ['hello', printable, 'tab\there\nnewline\r\n', 'x'.repeat(125), 'y'.repeat(126), 'z'.repeat(70000)]) await c.roundtrip(s);
    await c.closeNormally();
  }, shared.url);
});

test('text-utf8-multibyte', async () => {
  const p = await newPage();
  await p.run(async (url) => {
    const c = await window.lib.Conn.open(url);
    const samples = [
      'héllo wörld ünïcode',
      '中文字符 日本語のテキスト 한국어',
      'emoji 😀🎉👩‍👩‍👧‍👦 🇫🇷 and astral 𝄞 𐍈',
      'Ελληνικά · русский · العربية · עברית',
      'combining e\u0301 a\u0308, zero width\u200bspace, \ufeff BOM, max \u{10ffff}',
      '\u0000 nul and controls \u0001\u001f\u007f',
      '😀'.repeat(20000),
      window.lib.randText(100000, 7),
    ];
    for (const s of samples) await c.roundtrip(s);
    await c.closeNormally();
  }, shared.url);
});

test('text-empty', async () => {
  const p = await newPage();
  await p.run(async (url) => {
    const c = await window.lib.Conn.open(url);
    await c.roundtrip('', 'empty text');
    await c.roundtrip('after the empty one');
    await c.roundtrip('', 'second empty text');
    await c.closeNormally();
  }, shared.url);
});

// ---- binary -----------------------------------------------------------------

for (const n of [0, 1, 125, 126, 65535, 65536, 1 << 20]) {
  test(`binary-${n === 1 << 20 ? '1MiB' : n}`, async () => {
    const p = await newPage();
    await p.run(async ({ url, n }) => {
      const { Conn, randomBytes, patternBytes } = window.lib;
      const c = await Conn.open(url);
      // A random payload sent as an ArrayBuffer, a structured one sent as a
      // Uint8Array view into a larger buffer (only the view may go out).
      await c.roundtrip(randomBytes(n).buffer, 'random binary echo');
      const big = new Uint8Array(n + 16);
      big.set(patternBytes(n, n & 0xff), 8);
      await c.roundtrip(big.subarray(8, 8 + n), 'patterned binary echo (a view)');
      await c.closeNormally();
    }, { url: shared.url, n });
  });
}

// ---- permessage-deflate ----------------------------------------------------

let negotiated = null;

test('deflate-negotiated', async () => {
  const p = await newPage();
  negotiated = await p.run(async (url) => {
    const c = await window.lib.Conn.open(url);
    await c.roundtrip('a'.repeat(10000));
    await c.closeNormally();
    return c.ws.extensions;
  }, shared.url);
  note(`Chromium reports ws.extensions = ${JSON.stringify(negotiated)} with ws echo`);
  expect(/^permessage-deflate(\s*;|$)/.test(negotiated), `ws.extensions is ${JSON.stringify(negotiated)}, expected permessage-deflate to be negotiated`);
});

test('deflate-1MiB-json-text', async () => {
  // Through the relay, to see that both sides really compressed.
  const relay = await startRelay(shared.url);
  const p = await newPage();
  const r = await p.run(async (url) => {
    const c = await window.lib.Conn.open(url);
    const doc = window.lib.jsonText(1 << 20);
    const t0 = performance.now();
    await c.roundtrip(doc, 'JSON echo');
    const ms = performance.now() - t0;
    await c.roundtrip(doc, 'second JSON echo');
    await c.closeNormally();
    return { extensions: c.ws.extensions, bytes: window.lib.utf8Length(doc), ms };
  }, relay.url);
  const { upBytes, downBytes } = relay.rec;
  note(`1 MiB JSON twice (${r.bytes} bytes each, first echo ${r.ms.toFixed(0)} ms): ${upBytes} bytes on the wire to the server, ${downBytes} back`);
  expect(/^permessage-deflate/.test(r.extensions), `deflate not negotiated: ws.extensions ${JSON.stringify(r.extensions)}`);
  expect(upBytes < r.bytes / 2, `Chromium sent ${upBytes} bytes for two ${r.bytes}-byte JSON messages: not compressed`);
  expect(downBytes < r.bytes / 2, `ws echo sent ${downBytes} bytes back for two ${r.bytes}-byte JSON messages: it negotiated permessage-deflate but did not compress`);
});

test('deflate-1MiB-random-binary', async () => {
  const p = await newPage();
  await p.run(async (url) => {
    const c = await window.lib.Conn.open(url);
    const data = window.lib.randomBytes(1 << 20);
    await c.roundtrip(data.buffer, 'random 1 MiB binary echo');
    await c.roundtrip(data.buffer, 'second random 1 MiB binary echo');
    await c.closeNormally();
  }, shared.url);
});

test('deflate-1MiB-random-text', async () => {
  const p = await newPage();
  await p.run(async (url) => {
    const c = await window.lib.Conn.open(url);
    const s = window.lib.randText(1 << 20, 99);
    await c.roundtrip(s, 'random 1 MiB text echo');
    await c.roundtrip(s, 'second random 1 MiB text echo');
    await c.closeNormally();
  }, shared.url);
});

test('deflate-mixed-sequence', async () => {
  // Compressed and barely compressible messages in turn on one connection,
  // so the server's compression context carries across them.
  const p = await newPage();
  await p.run(async (url) => {
    const { Conn, jsonText, randomBytes, randText } = window.lib;
    const c = await Conn.open(url);
    for (let i = 0; i < 20; i++) {
      await c.roundtrip(jsonText(1000 + i * 3000), `JSON #${i}`);
      await c.roundtrip(randomBytes(i * 2000).buffer, `random binary #${i}`);
      await c.roundtrip(randText(i * 500, i), `random text #${i}`);
    }
    await c.closeNormally();
  }, shared.url);
});

test('no-deflate-server', async () => {
  const srv = await startEcho(['--no-deflate']);
  const relay = await startRelay(srv.url);
  const p = await newPage();
  const r = await p.run(async (url) => {
    const { Conn, jsonText, randomBytes } = window.lib;
    const c = await Conn.open(url);
    await c.roundtrip('plain text ✓');
    await c.roundtrip(randomBytes(70000).buffer, 'random binary');
    const doc = jsonText(1 << 20);
    await c.roundtrip(doc, '1 MiB JSON');
    await c.closeNormally();
    return { extensions: c.ws.extensions, bytes: window.lib.utf8Length(doc) };
  }, relay.url);
  const res = headerFields(relay.rec.response);
  expect(r.extensions === '', `with --no-deflate ws.extensions is ${JSON.stringify(r.extensions)}, expected ''`);
  expect(!('sec-websocket-extensions' in res), `with --no-deflate the server answered Sec-WebSocket-Extensions: ${res['sec-websocket-extensions']}`);
  expect(relay.rec.downBytes > r.bytes, `${relay.rec.downBytes} bytes came back for a ${r.bytes}-byte message without compression`);
});

test('subprotocol-selected', async () => {
  // A page that asks for subprotocols connects only if the server selects
  // one of them: `ws echo --protocol` selects the page's first supported.
  const srv = await startEcho(['--protocol', 'chat.v1', '--protocol', 'superchat']);
  const p = await newPage();
  const r = await p.run(async (url) => {
    const { Conn } = window.lib;
    const c = await Conn.open(url, ['superchat', 'chat.v1']);
    await c.roundtrip('hello');
    await c.closeNormally();
    return { protocol: c.ws.protocol };
  }, srv.url);
  expect(r.protocol === 'superchat', `ws.protocol is ${JSON.stringify(r.protocol)}, expected 'superchat'`);
});

// ---- ordering, throughput, many connections ----------------------------

test('pipelined-1000-in-order', async () => {
  const p = await newPage();
  const r = await p.run(async (url) => {
    const c = await window.lib.Conn.open(url);
    const enc = new TextEncoder();
    const msgs = Array.from({ length: 1000 }, (_, i) => (i % 3 ? `message ${i} ✓` : enc.encode(`binary ${i}`).buffer));
    const t0 = performance.now();
    for (const m of msgs) c.ws.send(m);
    for (let i = 0; i < msgs.length; i++) window.lib.same(await c.recv(`echo #${i} of 1000`), msgs[i], `echo #${i} of 1000 (in order)`);
    const ms = performance.now() - t0;
    await c.closeNormally();
    return { ms };
  }, shared.url);
  note(`1000 small messages sent without waiting, all echoed in order in ${r.ms.toFixed(0)} ms`);
});

test('pipelined-1000-mixed-sizes', async () => {
  const p = await newPage();
  const r = await p.run(async (url) => {
    const { Conn, randomBytes, randText, same } = window.lib;
    const c = await Conn.open(url);
    let bytes = 0;
    const msgs = Array.from({ length: 1000 }, (_, i) => {
      const n = (i * 7919) % 16385;
      bytes += n;
      return i % 2 ? randomBytes(n).buffer : randText(n, i);
    });
    const t0 = performance.now();
    for (const m of msgs) c.ws.send(m);
    for (let i = 0; i < msgs.length; i++) same(await c.recv(`echo #${i} of 1000`), msgs[i], `echo #${i} of 1000 (in order)`);
    const ms = performance.now() - t0;
    await c.closeNormally();
    return { ms, bytes };
  }, shared.url);
  note(`1000 messages of 0-16 KiB (${(r.bytes / 1048576).toFixed(1)} MiB) echoed in order in ${r.ms.toFixed(0)} ms, ${((r.bytes / 1048576) / (r.ms / 1000)).toFixed(1)} MiB/s each way`);
});

test('50-connections-at-once', async () => {
  const p = await newPage();
  await p.run(async (url) => {
    const { Conn } = window.lib;
    const conns = await Promise.all(Array.from({ length: 50 }, () => Conn.open(url)));
    await Promise.all(conns.map(async (c, k) => {
      for (let i = 0; i < 10; i++) {
        await c.roundtrip(`connection ${k} message ${i} ✓`, `echo ${i} on connection ${k}`);
        await c.roundtrip(new Uint8Array([k, i, k ^ i, 255]).buffer, `binary echo ${i} on connection ${k}`);
      }
    }));
    const infos = await Promise.all(conns.map((c) => c.close(1000)));
    const bad = infos.map((info, k) => [k, info]).filter(([, info]) => info.code !== 1000 || !info.wasClean);
    if (bad.length) throw new Error(`${bad.length} of 50 connections did not close cleanly with 1000: ${JSON.stringify(bad.slice(0, 3))}`);
  }, shared.url);
});

// ---- closing handshake -------------------------------------------------------

// Closes started by the browser. RFC 6455 §5.5.1: the server answers with a
// close frame, typically echoing the status code; Chromium then reports a
// clean close with the code the server sent.
for (const [name, code, reason] of [
  ['close-1000', 1000, undefined],
  ['close-4000-unicode-reason', 4000, 'bye ünïcode'],
  ['close-4999-123-byte-reason', 4999, `${'é'.repeat(61)}x`],
  ['close-without-code', undefined, undefined],
]) {
  test(name, async () => {
    const p = await newPage();
    const info = await p.run(async ({ url, code, reason }) => {
      const c = await window.lib.Conn.open(url);
      await c.roundtrip('before closing');
      return c.close(code ?? undefined, reason ?? undefined);
    }, { url: shared.url, code: code ?? null, reason: reason ?? null });
    note(`${name}: close event ${JSON.stringify(info)}`);
    // close() without a code sends an empty close frame; the answer then
    // carries no status either, which the browser reports as 1005.
    const want = code ?? 1005;
    expect(info.wasClean === true, `close(${code ?? ''}) ended in an unclean close: ${JSON.stringify(info)}`);
    expect(info.code === want, `close(${code ?? ''}${reason ? `, ${JSON.stringify(reason)}` : ''}): the server answered with code ${info.code} (close event ${JSON.stringify(info)}), expected ${want}`);
    expect(info.reason === '' || info.reason === (reason ?? ''), `close reason came back as ${JSON.stringify(info.reason)}`);
  });
}

test('server-sigterm-closes-1001', async () => {
  // A server going away: every browser connection gets a clean 1001.
  const srv = await startEcho();
  const p = await newPage();
  await p.run(async (url) => {
    const { Conn } = window.lib;
    const conns = await Promise.all([0, 1, 2].map(() => Conn.open(url)));
    for (const c of conns) await c.roundtrip('before shutdown');
    window.pending = conns.map((c) => c.closed);
  }, srv.url);
  step('SIGTERM to ws echo');
  srv.proc.kill('SIGTERM');
  const infos = await p.run(() => window.lib.within(Promise.all(window.pending), 10000, 'close events after SIGTERM'));
  note(`after SIGTERM: ${JSON.stringify(infos[0])}`);
  for (const info of infos) expect(info.code === 1001 && info.wasClean, `after SIGTERM the browser saw ${JSON.stringify(info)}, expected a clean 1001`);
  const { code, sig } = await withTimeout(srv.exited, 10000, 'ws echo exit after SIGTERM');
  expect(code === 0, `ws echo exited with ${code ?? sig} after SIGTERM; ${srv.log()}`);
});

test('message-over-64MiB-limit-gets-1009', async () => {
  // SECURITY.md: a message over the 64 MiB limit gets close 1009. A page
  // sending 80 MiB is still sending when the server stops reading; the
  // browser must still receive that close frame (its code, at least: the
  // server fails the connection, so wasClean is not required).
  const p = await newPage();
  const info = await p.run(async (url) => {
    const { Conn, randomBytes, within } = window.lib;
    const c = await Conn.open(url);
    await c.roundtrip('before the big one');
    c.ws.send(randomBytes(80 << 20));
    return within(c.closed, 15000, 'close event after an 80 MiB message');
  }, shared.url);
  note(`80 MiB message: close event ${JSON.stringify(info)}`);
  expect(info.code === 1009, `sent an 80 MiB message (limit 64 MiB): the browser's close event is ${JSON.stringify(info)}, expected code 1009${info.code === 1006 ? ' (1006: the server\'s close frame never reached the page)' : ''}`);
});

test('page-closed-mid-transfer', async () => {
  // The browser goes away while megabytes are in flight both ways; the
  // server must drop those connections and carry on (checked below).
  const p = await newPage();
  await p.run(async (url) => {
    const { Conn, randomBytes, jsonText } = window.lib;
    const conns = await Promise.all([0, 1, 2, 3].map(() => Conn.open(url)));
    const big = randomBytes(1 << 20).buffer;
    const doc = jsonText(1 << 20);
    conns.forEach((c, i) => { for (let j = 0; j < 4; j++) c.ws.send(i % 2 ? big : doc); });
    await conns[0].recv('the first 1 MiB echo', 15000);
  }, shared.url);
  step('closing the page with data in flight');
  await p.page.close();
});

test('server-still-up', async () => {
  // Last: after everything above, the shared server is alive and serves a
  // new browser connection.
  expect(shared.proc.exitCode === null && shared.proc.signalCode === null,
    `the shared ws echo died: exit ${shared.proc.exitCode ?? shared.proc.signalCode}; ${shared.log()}`);
  const p = await newPage();
  await p.run(async (url) => {
    const c = await window.lib.Conn.open(url);
    await c.roundtrip('still here ✓');
    await c.roundtrip(window.lib.randomBytes(100000).buffer, 'binary echo');
    await c.closeNormally();
  }, shared.url);
});

// ---------------------------------------------------------------------------

async function setup() {
  step('starting the page server');
  pageServer = await startPageServer();
  step(`launching ${CHROMIUM}`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-proxy-server'],
  });
  context = await browser.newContext();
  shared = await startEcho([], { keep: true });
}

async function teardown() {
  for (const [what, fn] of [
    ['browser', () => browser && browser.close()],
    ['ws echo', () => shared && shared.stop()],
    ['page server', () => pageServer && new Promise((r) => pageServer.server.close(() => r()))],
  ]) {
    try {
      await withTimeout(Promise.resolve().then(fn), 20000, `stopping the ${what}`);
    } catch (e) {
      note(`teardown: ${e.message}`);
    }
  }
}

try {
  await withTimeout(setup(), 60000, 'setup');
} catch (e) {
  await teardown();
  setupFail(`${e.message} while ${stepNow()}`.replace(/\n/g, ' '));
}
note(`node ${process.version}, playwright-core ${playwrightVersion}, ${CHROMIUM} ${browser.version()}, ws binary ${WS_BIN}, page origin ${pageServer.origin}, shared ws echo at ${shared.url}`);
const failed = await runTests({ filter: FILTER, timeoutMs: TEST_TIMEOUT });
await teardown();
process.exit(failed ? 1 : 0);
