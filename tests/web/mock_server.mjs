// A small JSON-RPC 2.0 over WebSocket server with Node's `ws` package, for
// the tests of crates/ws-cli/web/ws-rpc.js that need a server `ws serve`
// cannot be made to be: one that never answers `rpc.ping` (the heartbeat
// test), one that ends a subscription as lagged or reports dropped items,
// one that requires a first-message login, one that answers in a batch.
//
// It speaks the subset of `ws serve`'s protocol the tests use (`rpc.ping`,
// `subscribe_clock`/`unsubscribe_clock`, `chat.echo`), plus per-test
// handlers. In-process:
//
//   const server = await startMockServer({ WebSocketServer, silentPings: true });
//   server.url      // ws://127.0.0.1:PORT/rpc
//   await server.close();
//
// or as a process, printing `listening on http://ADDR` like `ws serve`:
//
//   node tests/web/mock_server.mjs --listen 127.0.0.1:0 [--silent-pings]
//
// The `ws` package is found in WS_INTEROP_NODE_DIR (default
// ~/.cache/ws-interop/node).

import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/** A handler's value that means "send no answer". */
export const NO_ANSWER = Symbol('no answer');

/** The `ws` package from WS_INTEROP_NODE_DIR. */
export function loadWs() {
  const dir = process.env.WS_INTEROP_NODE_DIR || path.join(os.homedir(), '.cache', 'ws-interop', 'node');
  const require = createRequire(path.join(path.resolve(dir), 'package.json'));
  return require('ws');
}

/**
 * @typedef {object} MockConnection
 * @property {import('ws').WebSocket} ws
 * @property {(obj: unknown) => void} send send a JSON message
 * @property {(method: string, params?: unknown) => void} notify send a notification
 * @property {boolean} loggedIn
 * @property {URL} url the request URL (its query)
 * @property {string[]} offered the subprotocols the client offered
 */

/**
 * Start a mock server on 127.0.0.1.
 * @param {object} [options]
 * @param {number} [options.port] default 0 (any free port)
 * @param {boolean} [options.silentPings] never answer rpc.ping
 * @param {string} [options.loginToken] require `auth.login {token}` first (else -32001)
 * @param {Record<string, (params: any, conn: MockConnection, msg: any) => unknown>} [options.handlers]
 *   extra methods: return a result (or a promise of one), throw `{code, message, data}` for
 *   an error answer, or return NO_ANSWER
 * @returns {Promise<{url: string, port: number, addr: string, connections: Set<MockConnection>, received: any[], close: () => Promise<void>}>}
 */
export async function startMockServer(options = {}) {
  const { WebSocketServer } = loadWs();
  const handlers = options.handlers ?? {};
  const connections = new Set();
  const received = [];
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: options.port ?? 0,
    path: '/rpc',
    handleProtocols: (protocols) => (protocols.has('ws-rpc') ? 'ws-rpc' : false),
  });
  await new Promise((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  const { port } = wss.address();

  wss.on('connection', (ws, req) => {
    let nextSub = 1;
    const subs = new Map();
    /** @type {MockConnection} */
    const conn = {
      ws,
      url: new URL(req.url, `http://${req.headers.host}`),
      offered: String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim()).filter(Boolean),
      loggedIn: !options.loginToken,
      send: (obj) => {
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(obj));
      },
      notify: (method, params) => conn.send({ jsonrpc: '2.0', method, params }),
      subs,
    };
    connections.add(conn);
    ws.on('close', () => {
      connections.delete(conn);
      for (const t of subs.values()) clearInterval(t);
    });
    ws.on('message', async (data) => {
      let msg;
      try {
        msg = JSON.parse(String(data));
      } catch {
        conn.send({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } });
        return;
      }
      received.push(msg);
      const answer = (body) => {
        if (msg.id !== undefined) conn.send({ jsonrpc: '2.0', id: msg.id, ...body });
      };
      const { method, params } = msg;
      if (typeof method !== 'string') return; // an answer from the client (to a call of ours)
      if (method === 'rpc.ping') {
        if (!options.silentPings) answer({ result: 'pong' });
        return;
      }
      if (!conn.loggedIn) {
        if (method === 'auth.login') {
          if (params?.token === options.loginToken) {
            conn.loggedIn = true;
            answer({ result: true });
          } else answer({ error: { code: 4010, message: 'wrong token' } });
        } else {
          answer({ error: { code: -32001, message: 'Login required', data: { method: 'auth.login' } } });
        }
        return;
      }
      try {
        let result;
        if (handlers[method]) {
          result = await handlers[method](params, conn, msg);
        } else if (method === 'chat.echo') {
          result = params;
        } else if (method === 'subscribe_clock') {
          const id = nextSub++;
          const every = Math.max(10, params?.interval_ms ?? 1000);
          answer({ result: id });
          let n = 0;
          subs.set(id, setInterval(() => {
            conn.send({ jsonrpc: '2.0', method: 'clock', params: { subscription: id, result: { n: ++n, time: Date.now() } } });
          }, every));
          return;
        } else if (method === 'unsubscribe_clock') {
          const id = Array.isArray(params) ? params[0] : undefined;
          const t = subs.get(id);
          if (t) clearInterval(t);
          result = subs.delete(id);
        } else {
          throw { code: -32601, message: 'Method not found' };
        }
        if (result !== NO_ANSWER) answer({ result: result === undefined ? null : result });
      } catch (e) {
        answer({ error: { code: e?.code ?? -32603, message: e?.message ?? 'Internal error', ...(e?.data !== undefined ? { data: e.data } : {}) } });
      }
    });
  });

  return {
    url: `ws://127.0.0.1:${port}/rpc`,
    port,
    addr: `127.0.0.1:${port}`,
    connections,
    received,
    close: () =>
      new Promise((resolve) => {
        for (const c of connections) c.ws.terminate();
        wss.close(() => resolve());
      }),
  };
}

// As a process: `node mock_server.mjs --listen 127.0.0.1:PORT [--silent-pings]`.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const listen = args[args.indexOf('--listen') + 1] ?? '127.0.0.1:0';
  const port = Number(listen.split(':').pop());
  const server = await startMockServer({ port, silentPings: args.includes('--silent-pings') });
  console.log(`listening on http://${server.addr}`);
  const stop = () => server.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
