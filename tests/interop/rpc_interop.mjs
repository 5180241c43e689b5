// Interop tests between ws-rpc's server and Node's `rpc-websockets` client
// (v10): its `Client` calls, notifies and receives a subscription's items
// on ws-rpc's spec_server example (one process per test).
//
// Run through tests/interop/run.sh, which installs the package and builds
// spec_server. Standalone:
//
//   WS_RPC_SPEC_SERVER=path/to/examples/spec_server \
//   WS_INTEROP_RPC_WEBSOCKETS_DIR=dir/with/node_modules node tests/interop/rpc_interop.mjs
//
// Prints one line per test, `ok NAME` or `FAIL NAME: reason`, and exits 1
// if any test failed. Every test is bounded by WS_INTEROP_TEST_TIMEOUT
// seconds (default 20). Only 127.0.0.1 is used; ports are kernel-chosen.
// WS_INTEROP_FILTER=substring runs only the matching tests.

import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  Failure, defer, expect, runTests, setupFail as harnessSetupFail, step, tests, withTimeout,
} from './harness.mjs';

const SPEC_SERVER = process.env.WS_RPC_SPEC_SERVER;
const PKG_DIR = process.env.WS_INTEROP_RPC_WEBSOCKETS_DIR;
const TEST_TIMEOUT = Number(process.env.WS_INTEROP_TEST_TIMEOUT || 20) * 1000;
const FILTER = process.env.WS_INTEROP_FILTER || '';
const PREFIX = 'rpc/rpc-websockets';
const HOST = '127.0.0.1';

const setupFail = (reason) => harnessSetupFail(PREFIX, reason);

if (!SPEC_SERVER) setupFail('WS_RPC_SPEC_SERVER is not set');
try {
  accessSync(SPEC_SERVER, fsConstants.X_OK);
} catch {
  setupFail(`WS_RPC_SPEC_SERVER=${SPEC_SERVER} is not an executable`);
}
if (!PKG_DIR) setupFail('WS_INTEROP_RPC_WEBSOCKETS_DIR is not set');

// The package's ESM entry for Node, as `import { Client } from
// "rpc-websockets"` would resolve it from a module inside PKG_DIR.
let Client;
try {
  const dir = path.join(path.resolve(PKG_DIR), 'node_modules', 'rpc-websockets');
  const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const exp = pkg.exports || {};
  const entry = (exp.node && exp.node.import) || exp.import || pkg.module || pkg.main;
  ({ Client } = await import(pathToFileURL(path.join(dir, entry)).href));
  if (typeof Client !== 'function') throw new Error(`${entry} exports no Client`);
} catch (e) {
  setupFail(`cannot load rpc-websockets from ${PKG_DIR}: ${e.message}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const show = (v) => JSON.stringify(v);

// Start `spec_server --listen 127.0.0.1:0`; resolves once it prints its
// address.
async function startSpecServer() {
  step('starting spec_server');
  const proc = spawn(SPEC_SERVER, ['--listen', `${HOST}:0`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr = (stderr + d.toString()).slice(-600); });
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  const srv = { proc, exited, log: () => `spec_server stderr: ${show(stderr.trim())}` };
  defer(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15000);
      await exited;
      clearTimeout(t);
    }
  });
  srv.url = await withTimeout(new Promise((resolve, reject) => {
    let buf = '';
    proc.stdout.on('data', (d) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        if (line.startsWith('listening on ws://')) resolve(line.slice('listening on '.length));
        else reject(new Failure(`spec_server printed ${show(line)} instead of 'listening on ws://...'`));
      }
    });
    proc.on('error', (e) => reject(new Failure(`cannot start spec_server: ${e.message}`)));
    exited.then(({ code }) => reject(new Failure(`spec_server exited with ${code} before listening; ${srv.log()}`)));
  }), 10000, "spec_server's 'listening on' line");
  return srv;
}

// An rpc-websockets Client of `url`, open; closed after the test.
async function connect(url) {
  step(`connecting rpc-websockets' Client to ${url}`);
  const client = new Client(url, { autoconnect: true, reconnect: false });
  const errors = [];
  client.on('error', (e) => errors.push((e && e.message) || String(e)));
  let closeInfo = null;
  const closed = new Promise((resolve) => client.on('close', (code, reason) => {
    closeInfo = { code, reason: String(reason || '') };
    resolve(closeInfo);
  }));
  defer(() => client.close());
  await withTimeout(new Promise((resolve, reject) => {
    client.once('open', resolve);
    client.once('error', (e) => reject(new Failure(`connect failed: ${(e && e.message) || e}`)));
  }), 10000, 'open');
  return { client, errors, closed, closeInfo: () => closeInfo };
}

// `client.call(...)`, bounded; a rejection becomes a Failure that shows it.
async function call(c, srv, method, params, what = `${method} ${show(params)}`) {
  step(`calling ${what}`);
  try {
    return await withTimeout(c.client.call(method, params), 5000, `the answer to ${what}`);
  } catch (e) {
    if (e instanceof Failure) throw new Failure(`${e.message}; ${connState(c)}; ${srv.log()}`);
    throw new Failure(`${what} rejected with ${describeError(e)}; ${connState(c)}`);
  }
}

function describeError(e) {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return show(e);
}

function connState(c) {
  const closed = c.closeInfo();
  const parts = [closed ? `connection closed ${show(closed)}` : 'connection open'];
  if (c.errors.length) parts.push(`errors ${show(c.errors)}`);
  return parts.join(', ');
}

async function closeNormally(c) {
  step('closing');
  c.client.close(1000);
  const info = await withTimeout(c.closed, 10000, "the server's close frame");
  expect(info.code === 1000, `closed with 1000, the close event says ${show(info)}`);
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

const test = tests(PREFIX);

test('call', async () => {
  const srv = await startSpecServer();
  const c = await connect(srv.url);

  let r = await call(c, srv, 'subtract', [42, 23]);
  expect(r === 19, `subtract [42, 23]: expected 19, got ${show(r)}`);
  r = await call(c, srv, 'subtract', { minuend: 42, subtrahend: 23 });
  expect(r === 19, `subtract {minuend: 42, subtrahend: 23}: expected 19, got ${show(r)}`);
  r = await call(c, srv, 'sum', [1, 2, 4]);
  expect(r === 7, `sum [1, 2, 4]: expected 7, got ${show(r)}`);
  r = await call(c, srv, 'get_data', undefined, 'get_data (no params)');
  expect(show(r) === show(['hello', 5]), `get_data: expected ["hello",5], got ${show(r)}`);

  step('calling foobar (no such method)');
  let err;
  try {
    const got = await withTimeout(c.client.call('foobar'), 5000, 'the answer to foobar');
    throw new Failure(`foobar: expected an error -32601, got result ${show(got)}`);
  } catch (e) {
    if (e instanceof Failure) throw e;
    err = e;
  }
  expect(err && typeof err === 'object' && !(err instanceof Error) && err.code === -32601,
    `foobar: expected a rejection with an error object of code -32601, got ${describeError(err)}`);
  expect(typeof err.message === 'string', `foobar: the error object has no message: ${show(err)}`);

  step('sending the notification update [1, 2]');
  await withTimeout(c.client.notify('update', [1, 2]), 5000, 'notify update');
  r = await call(c, srv, 'subtract', [23, 42], 'subtract [23, 42] after a notification');
  expect(r === -19, `subtract [23, 42] after a notification: expected -19, got ${show(r)}`);
  expect(!c.errors.length, `the client reported errors: ${show(c.errors)}`);

  await closeNormally(c);
});

test('subscription-notifications', async () => {
  const srv = await startSpecServer();
  const c = await connect(srv.url);
  const got = [];
  c.client.on('ticks', (p) => got.push(p));

  const id = await call(c, srv, 'subscribe_ticks', undefined, 'subscribe_ticks (no params)');
  expect(typeof id === 'number' || typeof id === 'string', `subscribe_ticks answered ${show(id)}, not a subscription id`);

  step('waiting for 5 ticks');
  const mine = () => got.filter((p) => p && p.subscription === id);
  await withTimeout((async () => { while (mine().length < 5) await sleep(10); })(), 5000,
    `5 ticks for subscription ${show(id)} (got ${got.length} ticks notifications)`)
    .catch((e) => { throw new Failure(`${e.message}; first ${show(got.slice(0, 3))}; ${connState(c)}; ${srv.log()}`); });
  const others = got.filter((p) => !p || p.subscription !== id);
  expect(!others.length, `ticks notifications for another subscription than ${show(id)}: ${show(others.slice(0, 3))}`);
  const items = mine().map((p) => p.result);
  for (let i = 0; i < items.length; i++) {
    const n = items[i] && items[i].n;
    expect(Number.isInteger(n), `item ${i + 1} is ${show(items[i])}, not {"n": k}`);
    if (i) expect(n === items[i - 1].n + 1, `item after ${show(items[i - 1])} is ${show(items[i])}`);
  }

  const ok = await call(c, srv, 'unsubscribe_ticks', [id]);
  expect(ok === true, `unsubscribe_ticks [${show(id)}]: expected true, got ${show(ok)}`);
  step('checking that the ticks stop');
  await sleep(100); // items already in flight
  const after = mine().length;
  await sleep(200);
  expect(mine().length === after, `${mine().length - after} ticks came 100 to 300 ms after unsubscribe_ticks answered true`);

  const again = await call(c, srv, 'unsubscribe_ticks', [id], 'unsubscribe_ticks again');
  expect(again === false, `unsubscribe_ticks [${show(id)}] a second time: expected false, got ${show(again)}`);
  expect(!c.errors.length, `the client reported errors: ${show(c.errors)}`);
  await closeNormally(c);
});

const failed = await runTests({ filter: FILTER, timeoutMs: TEST_TIMEOUT });
process.exit(failed ? 1 : 0);
