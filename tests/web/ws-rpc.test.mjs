// Tests of crates/ws-cli/web/ws-rpc.js (the browser client of `ws serve`)
// under Node's test runner, against a real `ws serve` and, for a server
// that misbehaves on purpose (never answers rpc.ping, ends a subscription as
// lagged, requires a login it then refuses, answers in a batch), against
// tests/web/mock_server.mjs. See tests/web/README.md.
//
//   node --test tests/web/ws-rpc.test.mjs
//
// Environment:
//   WS_BIN               the `ws` binary (default $CARGO_TARGET_DIR/release/ws,
//                        CARGO_TARGET_DIR defaulting to ~/.cache/ws-target)
//   WS_INTEROP_NODE_DIR  where the `ws` npm package (v8) is installed
//                        (default ~/.cache/ws-interop/node)
//   WS_RPC_WEBSOCKET     'global': give the client the platform's WebSocket
//                        (browser API) instead of the `ws` package's
//
// Only 127.0.0.1 is used, ports are chosen at run time, every test is bounded
// in time, and every server started is killed at the end.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { NO_ANSWER, loadWs, startMockServer } from './mock_server.mjs';
import {
  CLOSED, ClientErrorCode, ErrorCode, OPEN, RECONNECTING, ReadyState, RpcClient, RpcError, Subscription,
} from '../../crates/ws-cli/web/ws-rpc.js';

const TARGET = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache', 'ws-target');
const WS_BIN = process.env.WS_BIN || path.join(TARGET, 'release', 'ws');
// The WebSocket class the client gets: the `ws` package's, or with
// WS_RPC_WEBSOCKET=global the platform's (a browser's API: Node 22+, or Node 20
// with --experimental-websocket, which is undici's WHATWG WebSocket).
const WebSocket = process.env.WS_RPC_WEBSOCKET === 'global' ? globalThis.WebSocket : loadWs();
if (typeof WebSocket !== 'function') throw new Error('WS_RPC_WEBSOCKET=global: no global WebSocket (Node 20: --experimental-websocket)');
const T = { timeout: 10_000 }; // per test

// ---------------------------------------------------------------- helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The next `type` event's detail (an RpcClient or any EventTarget). */
function once(target, type, ms = 4000) {
  return new Promise((resolve, reject) => {
    const on = (e) => {
      clearTimeout(timer);
      target.removeEventListener(type, on);
      resolve(e.detail);
    };
    const timer = setTimeout(() => {
      target.removeEventListener(type, on);
      reject(new Error(`no '${type}' event within ${ms} ms`));
    }, ms);
    target.addEventListener(type, on);
  });
}

/** The next `type` event of a Subscription. */
function subOnce(sub, type, ms = 4000) {
  return new Promise((resolve, reject) => {
    const off = sub.on(type, (d) => {
      clearTimeout(timer);
      off();
      resolve(d);
    });
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no '${type}' subscription event within ${ms} ms`));
    }, ms);
  });
}

async function waitFor(pred, what, ms = 4000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A port nothing listens on (for a while). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const spawned = new Set();
process.on('exit', () => {
  for (const p of spawned) p.kill('SIGKILL');
});

/**
 * Start `ws serve` on 127.0.0.1:`port` (0: any) and read its address from
 * its first line (`listening on http://ADDR`).
 */
async function startServe({ port = 0, args = [] } = {}) {
  const proc = spawn(WS_BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--threads', '1', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  spawned.add(proc);
  let stderr = '';
  let killing = false;
  proc.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) =>
    proc.once('exit', (code, signal) => {
      spawned.delete(proc);
      if (!killing) console.error(`# ws serve (port ${port}) exited by itself: code ${code}, signal ${signal}; stderr: ${stderr}`);
      resolve({ code, signal });
    }),
  );
  const line = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`ws serve printed no address within 5 s; stderr: ${stderr}`)), 5000);
    proc.stdout.on('data', (d) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0) {
        clearTimeout(timer);
        resolve(buf.slice(0, i));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`ws serve exited with ${code}; stderr: ${stderr}`));
    });
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
  const m = /listening on [a-z]+:\/\/([^\s/]+)/.exec(line);
  if (!m) {
    proc.kill('SIGKILL');
    throw new Error(`unexpected first line from ws serve: ${JSON.stringify(line)}`);
  }
  const addr = m[1];
  return {
    proc,
    addr,
    port: Number(addr.split(':').pop()),
    url: `ws://${addr}/rpc`,
    exited,
    /** Kill it (SIGKILL unless told) and wait until it is gone. */
    async kill(signal = 'SIGKILL') {
      killing = true;
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** A client with quick settings for tests, closed when the test ends. */
function newClient(t, url, options = {}) {
  const client = new RpcClient(url, {
    WebSocket,
    heartbeat: null,
    requestTimeout: 3000,
    backoff: { initial: 50, factor: 2, max: 200, jitter: 0.5 },
    ...options,
  });
  t.after(() => client.close());
  return client;
}

async function openClient(t, url, options) {
  const client = newClient(t, url, options);
  await once(client, 'open');
  return client;
}

let roomSeq = 0;
const freshRoom = () => `r${process.pid}-${++roomSeq}`;

const isKind = (kind, code) => (e) => {
  assert.ok(e instanceof RpcError, `expected an RpcError, got ${e}`);
  assert.equal(e.kind, kind, e.message);
  if (code !== undefined) assert.equal(e.code, code);
  return true;
};

before(() => {
  try {
    accessSync(WS_BIN, fsConstants.X_OK);
  } catch {
    throw new Error(`WS_BIN=${WS_BIN} is not an executable: build it with CARGO_TARGET_DIR=~/.cache/ws-target cargo build --release -p ws-cli`);
  }
  const help = spawnSync(WS_BIN, ['serve', '--help'], { encoding: 'utf8' });
  if (help.status !== 0) throw new Error(`${WS_BIN} has no 'serve' command: ${help.stderr}`);
});

after(() => {
  for (const p of spawned) p.kill('SIGKILL');
});

// ------------------------------------------------------------------ tests

describe('against ws serve', () => {
  let server;
  before(async () => {
    server = await startServe();
  });
  after(async () => {
    await server?.kill();
  });

  test('module surface', () => {
    assert.deepEqual(ReadyState, { CONNECTING: 'connecting', OPEN: 'open', RECONNECTING: 'reconnecting', CLOSED: 'closed' });
    assert.equal(RpcClient.OPEN, OPEN);
    assert.equal(ErrorCode.METHOD_NOT_FOUND, -32601);
    assert.equal(ClientErrorCode.TIMEOUT, -32800);
    if (!globalThis.WebSocket) assert.throws(() => new RpcClient('ws://127.0.0.1:1/rpc'), /no WebSocket implementation/);
  });

  test('requests, results and error codes', T, async (t) => {
    const client = newClient(t, server.url);
    const states = [];
    client.addEventListener('state', (e) => states.push(e.detail.state));
    assert.equal(client.readyState, 'connecting');
    const room = freshRoom();
    // Made while connecting: queued, then sent.
    const joined = await client.request('chat.join', { room, name: 'ann' });
    // `node`: the server process's id, in every message and event.
    assert.match(joined.node, /^[0-9a-f]{8}$/);
    assert.deepEqual(joined, { room, name: 'ann', node: joined.node, members: ['ann'], messages: [] });
    assert.equal(client.readyState, 'open');
    assert.equal(client.protocol, 'ws-rpc');
    assert.deepEqual(states, ['open']);
    const sent = await client.request('chat.send', { room, text: 'hello' });
    assert.equal(sent.seq, 1);
    assert.equal(sent.node, joined.node);
    assert.equal(typeof sent.time, 'number');
    const rooms = await client.request('chat.rooms');
    assert.ok(rooms.some((r) => r.name === room && r.members === 1));

    await assert.rejects(client.request('no.such.method', [1, 2]), (e) => {
      isKind('server', ErrorCode.METHOD_NOT_FOUND)(e);
      assert.equal(e.method, 'no.such.method');
      return true;
    });
    await assert.rejects(client.request('chat.join', { room: 'Not A Room', name: 'x' }), (e) => {
      isKind('server', ErrorCode.INVALID_PARAMS)(e);
      assert.match(e.message, /room/);
      return true;
    });
    await assert.rejects(client.request('chat.send', { room: freshRoom(), text: 'x' }), isKind('server', 4003));
    // The client's own checks.
    await assert.rejects(client.request('chat.rooms', 'not params'), isKind('invalid', ClientErrorCode.INVALID));
    await assert.rejects(client.request('chat.rooms', { big: 10n }), isKind('invalid', ClientErrorCode.INVALID));
    assert.equal(client.pendingCount, 0);
  });

  test('notifications both ways, as notify:<method> events', T, async (t) => {
    const room = freshRoom();
    const ann = await openClient(t, server.url);
    const bob = await openClient(t, server.url);
    const { node } = await ann.request('chat.join', { room, name: 'ann' });
    const joinedEvent = once(ann, 'notify:chat.joined');
    await bob.request('chat.join', { room, name: 'bob' });
    assert.deepEqual(await joinedEvent, { room, name: 'bob', node, members: ['ann', 'bob'] });

    const annGot = once(ann, 'notify:chat.message');
    const bobGot = once(bob, 'notify:chat.message');
    const bobAll = once(bob, 'notification');
    // A notification from the client: no answer, the server still runs it.
    assert.equal(await ann.notify('chat.send', { room, text: 'hi all' }), undefined);
    const m = await bobGot;
    assert.equal(m.room, room);
    assert.equal(m.sender, 'ann');
    assert.equal(m.text, 'hi all');
    assert.equal(typeof m.seq, 'number');
    assert.deepEqual(await annGot, m, 'the sender gets it too');
    assert.deepEqual(await bobAll, { method: 'chat.message', params: m });

    const left = once(ann, 'notify:chat.left');
    assert.equal(await bob.request('chat.leave', { room }), true);
    assert.deepEqual(await left, { room, name: 'bob', node, members: ['ann'] });
  });

  test('timeouts reject and forget the call', T, async (t) => {
    const srv = await startServe();
    t.after(() => srv.kill());
    const client = await openClient(t, srv.url);
    await client.request('chat.rooms');
    // A server that does not answer: stopped.
    srv.proc.kill('SIGSTOP');
    const t0 = performance.now();
    await assert.rejects(client.request('chat.rooms', undefined, { timeout: 200 }), (e) => {
      isKind('timeout', ClientErrorCode.TIMEOUT)(e);
      assert.equal(e.method, 'chat.rooms');
      return true;
    });
    const dt = performance.now() - t0;
    assert.ok(dt >= 190 && dt < 1000, `timed out after ${dt} ms`);
    assert.equal(client.pendingCount, 0, 'the entry is removed');
    srv.proc.kill('SIGCONT');
    // The late answer to the timed-out call is ignored; the next call gets its own.
    assert.deepEqual(await client.request('chat.rooms'), []);
    assert.equal(client.pendingCount, 0);

    // A timer that fires late because this process was not running (a frozen tab,
    // a busy event loop) does not reject an answer that came meanwhile.
    const answered = client.request('chat.rooms', undefined, { timeout: 100 });
    const until = performance.now() + 300;
    while (performance.now() < until); // blocked past the timeout; the answer arrives
    assert.deepEqual(await answered, []);

    // The default timeout, and one that expires in the queue.
    const port = await freePort();
    const offline = newClient(t, `ws://127.0.0.1:${port}/rpc`, { requestTimeout: 150 });
    const p = offline.request('chat.rooms');
    assert.equal(offline.queuedCount, 1);
    assert.ok(offline.bufferedAmount > 0);
    await assert.rejects(p, isKind('timeout'));
    assert.equal(offline.queuedCount, 0);
    assert.equal(offline.bufferedAmount, 0);
    // An AbortSignal takes a queued call out too.
    const ac = new AbortController();
    const q = offline.request('chat.rooms', undefined, { signal: ac.signal, timeout: 0 });
    assert.equal(offline.queuedCount, 1);
    ac.abort();
    await assert.rejects(q, isKind('aborted', ClientErrorCode.ABORTED));
    assert.equal(offline.queuedCount, 0);
  });

  test('interceptors: request changed, refused, response changed, in order', T, async (t) => {
    const client = await openClient(t, server.url);
    const room = freshRoom();
    const seen = [];
    // 1: aliases and a default name; 2: async, random delays (order must hold); 3: refuses chat.leave.
    client.interceptors.request.use((call) => {
      seen.push(`${call.notification ? 'notify' : 'request'} ${call.method}`);
      if (call.method === 'rooms') return { ...call, method: 'chat.rooms' };
      if (call.method === 'chat.join') call.params = { name: 'ann', ...call.params };
    });
    const slow = client.interceptors.request.use(async (call) => {
      await sleep(Math.random() * 20);
      return call;
    });
    client.interceptors.request.use((call) => {
      if (call.method === 'chat.leave') throw new Error('leaving is not allowed here');
    });
    const joined = await client.request('chat.join', { room });
    assert.deepEqual(joined, { room, name: 'ann', node: joined.node, members: ['ann'], messages: [] });
    assert.ok((await client.request('rooms')).some((r) => r.name === room));
    await assert.rejects(client.request('chat.leave', { room }), (e) => {
      isKind('refused', ClientErrorCode.REFUSED)(e);
      assert.match(e.cause.message, /not allowed/);
      return true;
    });
    // It was not sent: still a member.
    assert.equal((await client.request('rooms')).find((r) => r.name === room).members, 1);
    // Calls through an async interceptor go out in the order they were made.
    const texts = ['a', 'b', 'c', 'd', 'e'];
    const got = [];
    client.addEventListener('notify:chat.message', (e) => got.push(e.detail.text));
    const seqs = (await Promise.all(texts.map((text) => client.request('chat.send', { room, text })))).map((r) => r.seq);
    assert.deepEqual(seqs, [1, 2, 3, 4, 5]);
    await waitFor(() => got.length === 5, 'five messages');
    assert.deepEqual(got, texts);
    await client.notify('chat.send', { room, text: 'f' });
    assert.ok(seen.includes('notify chat.send'), 'notifications go through them too');
    assert.equal(client.interceptors.request.eject(slow), true);

    // Response interceptors: change a result, turn an error into a result, async.
    const r1 = client.interceptors.response.use((res, call) => {
      if (call.method === 'chat.rooms') return { ...res, result: res.result.map((r) => r.name) };
    });
    client.interceptors.response.use(async (res, call) => {
      await sleep(1);
      if (res.error?.code === ErrorCode.METHOD_NOT_FOUND) return { id: res.id, result: `no ${call.method}` };
    });
    assert.ok((await client.request('rooms')).includes(room));
    assert.equal(await client.request('nope'), 'no nope');
    client.interceptors.response.eject(r1);
    assert.ok((await client.request('rooms')).every((r) => typeof r === 'object'));
    // A response interceptor that throws rejects the call with its error.
    client.interceptors.response.use(() => {
      throw new RpcError('vetoed', { kind: 'refused' });
    });
    await assert.rejects(client.request('rooms'), /vetoed/);
    client.interceptors.response.clear();
    client.interceptors.request.clear();
    await client.request('chat.rooms');
  });

  test('the queue while connecting is bounded, then sent in order', T, async (t) => {
    const port = await freePort();
    const client = newClient(t, `ws://127.0.0.1:${port}/rpc`, { queueLimit: 3, queueBytes: 400 });
    const room = freshRoom();
    const queued = [
      client.request('chat.join', { room, name: 'ann' }),
      client.request('chat.send', { room, text: 'one' }),
      client.request('chat.send', { room, text: 'two' }),
    ];
    assert.equal(client.queuedCount, 3);
    const bytes = client.bufferedAmount;
    assert.ok(bytes > 100 && bytes < 400, `${bytes} bytes queued`);
    // Full (count): rejected at once, without waiting for anything.
    let settled = null;
    const fourth = client.request('chat.rooms').catch((e) => (settled = e));
    await Promise.resolve();
    await Promise.resolve();
    assert.ok(settled, 'rejected at once');
    isKind('queue-full', ClientErrorCode.QUEUE_FULL)(await fourth);
    await assert.rejects(client.notify('chat.send', { room, text: 'x' }), isKind('queue-full'));
    assert.equal(client.queuedCount, 3);

    // Full (bytes): a second client with room for one small call.
    const small = newClient(t, `ws://127.0.0.1:${port}/rpc`, { queueBytes: 100 });
    const fits = small.request('chat.rooms');
    await assert.rejects(small.request('chat.send', { room, text: 'x'.repeat(100) }), isKind('queue-full'));
    assert.equal(small.queuedCount, 1);

    // The server comes: the queued calls go out, in order, once.
    let reconnecting = 0;
    client.addEventListener('reconnecting', () => reconnecting++);
    await sleep(100);
    assert.ok(reconnecting >= 1, 'it keeps trying');
    assert.equal(client.readyState, 'connecting');
    const srv = await startServe({ port });
    t.after(() => srv.kill());
    const [j, s1, s2] = await Promise.all(queued);
    assert.equal(j.room, room);
    assert.deepEqual([s1.seq, s2.seq], [1, 2]);
    assert.equal(client.queuedCount, 0);
    assert.ok(Array.isArray(await fits));
  });

  test('reconnect: in flight rejected, queued sent once, subscription resumes, onReconnect runs', T, async (t) => {
    const srv = await startServe();
    t.after(() => srv.kill());
    const room = freshRoom();
    const hooks = [];
    const client = newClient(t, srv.url, {
      onReconnect: async (ctx) => {
        hooks.push(ctx.attempts);
        // Goes out before the queued calls (which need the membership).
        await ctx.request('chat.join', { room, name: 'ann' });
      },
    });
    const states = [];
    client.addEventListener('state', (e) => states.push(e.detail.state));
    const delays = [];
    client.addEventListener('reconnecting', (e) => delays.push(e.detail.delay));
    const messages = [];
    client.addEventListener('notify:chat.message', (e) => messages.push(e.detail));
    await client.request('chat.join', { room, name: 'ann' });

    const sub = client.subscribe('subscribe_clock', { interval_ms: 20 });
    const items = [];
    sub.on('item', (item) => items.push(item));
    await sub.ready;
    const firstId = sub.id;
    await waitFor(() => items.length >= 2, 'clock items');

    // A call the server will never answer: sent to a stopped server, then it dies.
    srv.proc.kill('SIGSTOP');
    const inFlight = client.request('chat.rooms');
    assert.equal(client.pendingCount, 1);
    const closed = once(client, 'close');
    const rejected = assert.rejects(inFlight, isKind('disconnected', ClientErrorCode.DISCONNECTED));
    await srv.kill('SIGKILL');
    await rejected;
    const c = await closed;
    assert.equal(c.willReconnect, true);
    assert.equal(client.readyState, RECONNECTING);
    assert.equal(sub.state, 'subscribing');

    // Made while away: queued.
    const queued = ['q1', 'q2', 'q3'].map((text) => client.request('chat.send', { room, text }));
    assert.equal(client.queuedCount, 3);
    await sleep(150); // a few refused attempts
    const before = items.length;
    const resubscribed = subOnce(sub, 'resubscribed');
    const opened = once(client, 'open');

    const srv2 = await startServe({ port: srv.port });
    t.after(() => srv2.kill());
    const o = await opened;
    assert.equal(o.reconnected, true);
    const seqs = (await Promise.all(queued)).map((r) => r.seq);
    assert.deepEqual(seqs, [1, 2, 3], 'each queued call ran once, in order, after the hook');
    const r = await resubscribed;
    assert.equal(r.previousId, firstId);
    assert.equal(r.id, sub.id);
    assert.equal(sub.state, 'active');
    await waitFor(() => items.length >= before + 3, 'clock items after the reconnect');
    assert.equal(items[items.length - 1].n < items.length, true, 'a new clock (its count restarted)');
    await sleep(100);
    assert.deepEqual(messages.map((m) => m.text), ['q1', 'q2', 'q3'], 'each message once');
    assert.equal(hooks.length, 1);
    assert.ok(hooks[0] >= 1);
    assert.ok(delays.length >= 1 && delays.every((d) => d >= 0 && d <= 200), `delays ${delays}`);
    assert.deepEqual([...new Set(states)], ['open', 'reconnecting']);
    assert.equal(states[states.length - 1], 'open');
    assert.equal(await sub.unsubscribe(), true);
  });

  test('subscriptions: async iterator, callbacks, unsubscribe, errors', T, async (t) => {
    const client = await openClient(t, server.url);
    // Iterate; leaving the loop unsubscribes.
    const sub = client.subscribe('subscribe_clock', { interval_ms: 10 });
    assert.ok(sub instanceof Subscription);
    assert.equal(sub.unsubscribeMethod, 'unsubscribe_clock');
    const ns = [];
    for await (const item of sub) {
      ns.push(item.n);
      assert.equal(typeof item.time, 'number');
      if (ns.length === 5) break;
    }
    assert.deepEqual(ns, [1, 2, 3, 4, 5]);
    assert.equal(sub.state, 'ended');
    assert.equal(sub.reason, 'unsubscribed');

    // Callbacks: onItem, on('item'), on('end'); unsubscribe() answers true.
    const got = [];
    const sub2 = client.subscribe('subscribe_clock', { interval_ms: 10 }, { onItem: (i) => got.push(i.n) });
    const also = [];
    sub2.on('item', (i) => also.push(i.n));
    const subscribed = subOnce(sub2, 'subscribed');
    assert.equal(typeof (await subscribed).id, 'number');
    await waitFor(() => got.length >= 3, 'three items');
    const ended = subOnce(sub2, 'end');
    assert.equal(await sub2.unsubscribe(), true);
    assert.deepEqual(await ended, { reason: 'unsubscribed', error: null });
    assert.deepEqual(also, got);
    assert.equal(await sub2.unsubscribe(), false, 'only once');
    const n = got.length;
    await sleep(50);
    assert.equal(got.length, n, 'no items after unsubscribing');
    assert.equal(client.subscriptions.length, 0);

    // A subscribe call that fails: ready rejects, the iterator throws, 'end' says why.
    const bad = client.subscribe('subscribe_nothing');
    await assert.rejects(bad.ready, isKind('server', ErrorCode.METHOD_NOT_FOUND));
    assert.equal(bad.reason, 'error');
    await assert.rejects(bad.next(), isKind('server'));
    assert.deepEqual(await bad.next(), { value: undefined, done: true });

    // Unsubscribed before the server answered: the server is told afterwards.
    const early = client.subscribe('subscribe_clock', { interval_ms: 10 });
    assert.equal(await early.unsubscribe(), false);
    await assert.rejects(early.ready, isKind('aborted'));
    await client.request('chat.rooms'); // its answer and the unsubscribe came and went
    let stray = 0;
    client.addEventListener('notify:clock', () => stray++);
    await sleep(60);
    assert.ok(stray <= 1, `${stray} items of a subscription that should be over`);
  });

  test('heartbeat: a live server keeps answering', T, async (t) => {
    const client = await openClient(t, server.url, { heartbeat: { interval: 50, timeout: 1000 } });
    let closes = 0;
    client.addEventListener('close', () => closes++);
    await sleep(500);
    assert.equal(closes, 0);
    assert.equal(client.readyState, OPEN);
    await client.request('chat.rooms');
  });

  test('close() rejects everything and stops', T, async (t) => {
    const client = await openClient(t, server.url);
    const sub = client.subscribe('subscribe_clock', { interval_ms: 10 });
    await sub.ready;
    const iteration = (async () => {
      let n = 0;
      for await (const _ of sub) n++;
      return n;
    })();
    const inFlight = client.request('chat.rooms'); // sent, not answered yet
    assert.equal(client.pendingCount, 1);
    const states = [];
    client.addEventListener('state', (e) => states.push(e.detail.state));
    const closeEvent = once(client, 'close');
    client.close();
    assert.equal(client.readyState, CLOSED);
    assert.deepEqual(states, ['closed']);
    assert.deepEqual(await closeEvent, { code: 1000, reason: '', wasClean: true, willReconnect: false });
    await assert.rejects(inFlight, isKind('closed', ClientErrorCode.CLOSED));
    assert.equal(sub.reason, 'closed');
    assert.ok((await iteration) >= 0, 'the iteration ended');
    await assert.rejects(client.request('chat.rooms'), isKind('closed'));
    await assert.rejects(client.notify('chat.rooms'), isKind('closed'));
    assert.equal(client.subscribe('subscribe_clock').reason, 'closed');
    client.close(); // twice is fine

    // Queued calls too, and no reconnecting afterwards.
    const port = await freePort();
    const offline = newClient(t, `ws://127.0.0.1:${port}/rpc`);
    const queued = offline.request('chat.rooms');
    let attempts = 0;
    offline.addEventListener('reconnecting', () => attempts++);
    offline.close();
    await assert.rejects(queued, isKind('closed'));
    assert.equal(offline.queuedCount, 0);
    const seen = attempts;
    const srv = await startServe({ port });
    t.after(() => srv.kill());
    await sleep(300);
    assert.equal(attempts, seen);
    assert.equal(offline.readyState, CLOSED);
  });
});

describe('authentication (ws serve --token)', () => {
  let server;
  const token = 's3cret-T0ken';
  before(async () => {
    server = await startServe({ args: ['--token', token] });
  });
  after(async () => {
    await server?.kill();
  });

  test('a token offered as the subprotocol token.<T>', T, async (t) => {
    const client = await openClient(t, server.url, { token });
    assert.equal(client.protocol, 'ws-rpc');
    assert.ok(Array.isArray(await client.request('chat.rooms')));
  });

  test('a token in the query, or from a function', T, async (t) => {
    let asked = 0;
    const client = await openClient(t, server.url, { token: async () => (asked++, token), tokenTransport: 'query' });
    assert.ok(Array.isArray(await client.request('chat.rooms')));
    assert.equal(asked, 1);
  });

  test('a first-message login, before the queued calls', T, async (t) => {
    const client = newClient(t, server.url, { token, tokenTransport: 'login' });
    // Made before the connection: they must go after the login.
    assert.ok(Array.isArray(await client.request('chat.rooms')));
    const custom = newClient(t, server.url, { login: async (c) => (assert.equal(c, custom), { token }) });
    assert.ok(Array.isArray(await custom.request('chat.rooms')));
  });

  test('without a token: calls get -32001', T, async (t) => {
    const client = await openClient(t, server.url);
    await assert.rejects(client.request('chat.rooms'), isKind('server', ErrorCode.LOGIN_REQUIRED));
  });

  test('a login the server refuses closes the client', T, async (t) => {
    const client = newClient(t, server.url, { login: () => ({ token: 'wrong' }) });
    const errors = [];
    client.addEventListener('error', (e) => errors.push(e.detail));
    const queued = client.request('chat.rooms');
    await assert.rejects(queued, (e) => {
      isKind('closed')(e);
      assert.equal(e.cause.kind, 'server');
      assert.equal(e.cause.code, 4010);
      return true;
    });
    assert.equal(client.readyState, CLOSED);
    assert.equal(errors[0].code, 4010);
  });

  test('a token that cannot be a subprotocol closes the client at once', T, async (t) => {
    const client = newClient(t, server.url, { token: 'not a token/=' });
    await assert.rejects(client.request('chat.rooms'), (e) => {
      isKind('closed')(e);
      assert.equal(e.cause.name, 'SyntaxError');
      return true;
    });
  });

  test('a wrong token at the handshake: attempts fail, maxAttempts gives up', T, async (t) => {
    const client = newClient(t, server.url, { token: 'wrong', maxAttempts: 2 });
    const errors = [];
    client.addEventListener('error', (e) => errors.push(e.detail));
    const closed = once(client, 'close');
    await assert.rejects(client.request('chat.rooms'), isKind('closed'));
    await closed;
    assert.equal(client.readyState, CLOSED);
    assert.equal(errors.length, 3, 'the first attempt and two more');
    // (A browser's WebSocket does not say why; the `ws` package does.)
    if (process.env.WS_RPC_WEBSOCKET !== 'global') {
      assert.ok(errors.every((e) => /401/.test(e.message)), errors.map((e) => e.message).join('; '));
    }
  });
});

describe('against a misbehaving mock server', () => {
  test('heartbeat: a server that never answers rpc.ping is dead within interval+timeout', T, async (t) => {
    const mock = await startMockServer({ silentPings: true });
    t.after(() => mock.close());
    const client = newClient(t, mock.url, { heartbeat: { interval: 200, timeout: 300 }, backoff: { initial: 50, max: 50, jitter: 0 } });
    await once(client, 'open');
    const t0 = performance.now();
    const error = once(client, 'error');
    const c = await once(client, 'close', 3000);
    const dt = performance.now() - t0;
    assert.ok(dt >= 480 && dt < 900, `declared dead after ${dt} ms (interval 200 + timeout 300)`);
    assert.equal(c.code, 4000);
    assert.equal(c.willReconnect, true);
    isKind('timeout')(await error);
    assert.ok(mock.received.some((m) => m.method === 'rpc.ping'));
    assert.equal(client.readyState, RECONNECTING);
    const o = await once(client, 'open');
    assert.equal(o.reconnected, true);
    // Everything else still works on the new connection.
    assert.deepEqual(await client.request('chat.echo', { a: 1 }), { a: 1 });
  });

  test('a subscription the server reports dropped items of, then ends as lagged', T, async (t) => {
    let conn;
    const mock = await startMockServer({
      handlers: {
        subscribe_lossy: (_p, c, msg) => {
          conn = c;
          c.send({ jsonrpc: '2.0', id: msg.id, result: 7 });
          c.notify('lossy', { subscription: 7, result: 'a' });
          c.notify('lossy', { subscription: 7, dropped: 3 });
          c.notify('lossy', { subscription: 7, result: 'b' });
          c.notify('lossy', { subscription: 7, error: { code: -32003, message: 'subscription lagged behind', data: { dropped: 5 } } });
          return NO_ANSWER;
        },
      },
    });
    t.after(() => mock.close());
    const client = newClient(t, mock.url);
    const sub = client.subscribe('subscribe_lossy', [], { unsubscribe: 'unsubscribe_lossy' });
    const dropped = subOnce(sub, 'dropped');
    const items = [];
    await assert.rejects(
      (async () => {
        for await (const item of sub) items.push(item);
      })(),
      (e) => {
        isKind('server', ErrorCode.SUBSCRIPTION_LAGGED)(e);
        assert.deepEqual(e.data, { dropped: 5 });
        return true;
      },
    );
    assert.deepEqual(items, ['a', 'b']);
    assert.deepEqual(await dropped, { dropped: 3, total: 3, local: false });
    assert.equal(sub.dropped, 3);
    assert.equal(sub.reason, 'lagged');
    assert.ok(conn);
    assert.equal(client.subscriptions.length, 0);
  });

  test('a subscribe answer held up (response interceptor) past a reconnect is not used', T, async (t) => {
    const mock = await startMockServer();
    t.after(() => mock.close());
    const client = await openClient(t, mock.url);
    let hold = true;
    client.interceptors.response.use(async (_res, call) => {
      if (hold && call.method === 'subscribe_clock') {
        hold = false;
        for (const c of mock.connections) c.ws.terminate(); // the connection drops meanwhile
        await once(client, 'open');
      }
    });
    const sub = client.subscribe('subscribe_clock', { interval_ms: 10 });
    const item = subOnce(sub, 'item');
    await sub.ready;
    await item;
    assert.equal(sub.state, 'active');
    assert.equal(mock.connections.size, 1);
    assert.equal([...mock.connections][0].subs.size, 1, 'subscribed on the new connection');
  });

  test('answers in a batch, calls from the server, answers without id', T, async (t) => {
    const mock = await startMockServer({
      handlers: {
        two: (_p, c, msg) => {
          // The answer to the previous call and this one, and a notification, in one array.
          c.send([
            { jsonrpc: '2.0', id: msg.id, result: 'second' },
            { jsonrpc: '2.0', method: 'note', params: [1] },
            { jsonrpc: '2.0', id: msg.id - 1, result: 'first' },
          ]);
          return NO_ANSWER;
        },
        one: () => NO_ANSWER,
        ask: (_p, c) => {
          c.send({ jsonrpc: '2.0', id: 'srv-1', method: 'client.method', params: [] });
          c.send({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } });
          return true;
        },
      },
    });
    t.after(() => mock.close());
    const client = await openClient(t, mock.url);
    const note = once(client, 'notify:note');
    const first = client.request('one');
    const second = client.request('two');
    assert.deepEqual(await Promise.all([first, second]), ['first', 'second']);
    assert.deepEqual(await note, [1]);
    const error = once(client, 'error');
    assert.equal(await client.request('ask'), true);
    isKind('server', ErrorCode.PARSE_ERROR)(await error);
    await waitFor(() => mock.received.some((m) => m.id === 'srv-1'), 'the answer to the server call');
    const answer = mock.received.find((m) => m.id === 'srv-1');
    assert.equal(answer.error.code, ErrorCode.METHOD_NOT_FOUND);
  });
});
