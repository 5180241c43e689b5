// ws-rpc.js: the browser client of ws-rpc's JSON-RPC 2.0 over WebSocket
// server (`ws serve`). One ES module, no dependencies, no build step. Runs in
// browsers and under Node 20+ given a WebSocket implementation (the `ws`
// package's class works: pass it as the `WebSocket` option).
//
//   import { RpcClient } from './ws-rpc.js';
//   const client = new RpcClient('/rpc');              // ws(s)://<this host>/rpc
//   await client.request('chat.join', { room: 'lobby', name: 'ann' });
//   client.addEventListener('notify:chat.message', (e) => show(e.detail));
//   for await (const tick of client.subscribe('subscribe_clock', { interval_ms: 1000 })) { ... }
//
// What it does:
// - requests matched to answers by id, with a timeout each; notifications
//   both ways; server notifications as DOM events (`notify:<method>`);
// - a bounded queue (count and bytes) for calls made while the connection is
//   not open; they go out in order once it is;
// - reconnects with exponential backoff and jitter; calls that were sent and
//   not answered when the connection dropped fail with a `disconnected`
//   error (they may or may not have run), queued ones stay queued;
// - subscriptions (jsonrpsee's wire format) as async iterators or callbacks,
//   made again after a reconnect;
// - a heartbeat (`rpc.ping`, since browsers cannot send WebSocket pings)
//   that declares a silent server dead and reconnects;
// - request and response interceptors;
// - authentication by a token offered as a subprotocol (`token.<T>`), in the
//   URL query (`?token=T`), or by a first-message login call (`auth.login`).
//
// Errors are `RpcError`s: `.kind` says whose error it is ('server' for an
// error object the server answered with, else the client's own reason) and
// `.code` is the JSON-RPC code (the server's, or one of `ClientErrorCode`).

/** The states of a client (`client.readyState`). */
export const CONNECTING = 'connecting';
/** Open: calls go out at once. */
export const OPEN = 'open';
/** The connection was lost; waiting for the backoff delay or opening a new one. */
export const RECONNECTING = 'reconnecting';
/** Closed for good: by `close()`, or reconnecting gave up. */
export const CLOSED = 'closed';

/**
 * @typedef {'connecting' | 'open' | 'reconnecting' | 'closed'} ReadyStateName
 */

/** All four states. */
export const ReadyState = Object.freeze({ CONNECTING, OPEN, RECONNECTING, CLOSED });

/**
 * Error codes a server sends: JSON-RPC 2.0's (§5.1) and ws-rpc's own
 * (-32000..-32006).
 */
export const ErrorCode = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  /** A server middleware's deadline passed. */
  SERVER_TIMED_OUT: -32000,
  /** A call before the first-message login. */
  LOGIN_REQUIRED: -32001,
  /** A server middleware refused the call (authorization, load shedding). */
  SERVER_REFUSED: -32002,
  /** The final notification of a subscription that fell behind. */
  SUBSCRIPTION_LAGGED: -32003,
  TOO_MANY_SUBSCRIPTIONS: -32004,
  BATCH_TOO_LARGE: -32005,
  SHUTTING_DOWN: -32006,
});

/**
 * Codes of the errors the client makes itself. They lie outside JSON-RPC's
 * reserved range (-32768..-32000), so they never collide with the codes of
 * the spec or of ws-rpc's server; `RpcError.kind` names them too.
 */
export const ClientErrorCode = Object.freeze({
  /** No answer within the request's timeout (kind 'timeout'). */
  TIMEOUT: -32800,
  /** The connection dropped after the call was sent, before its answer (kind 'disconnected'). */
  DISCONNECTED: -32801,
  /** The queue of calls waiting for the connection is full (kind 'queue-full'). */
  QUEUE_FULL: -32802,
  /** The client is closed (kind 'closed'). */
  CLOSED: -32803,
  /** A request interceptor refused the call (kind 'refused'). */
  REFUSED: -32804,
  /** The caller's AbortSignal fired (kind 'aborted'). */
  ABORTED: -32805,
  /** The method or parameters cannot be sent: not a string, not an array or object, not JSON (kind 'invalid'). */
  INVALID: -32806,
});

/**
 * @typedef {'server' | 'timeout' | 'disconnected' | 'queue-full' | 'closed' | 'refused' | 'aborted' | 'invalid'} RpcErrorKind
 */

const KIND_CODES = {
  timeout: ClientErrorCode.TIMEOUT,
  disconnected: ClientErrorCode.DISCONNECTED,
  'queue-full': ClientErrorCode.QUEUE_FULL,
  closed: ClientErrorCode.CLOSED,
  refused: ClientErrorCode.REFUSED,
  aborted: ClientErrorCode.ABORTED,
  invalid: ClientErrorCode.INVALID,
};

/**
 * Why a call failed: an error object the server answered with
 * (`kind === 'server'`, `code`, `message` and `data` as sent), or the
 * client's own reason (`kind` one of 'timeout', 'disconnected',
 * 'queue-full', 'closed', 'refused', 'aborted', 'invalid', with the matching
 * `ClientErrorCode`).
 */
export class RpcError extends Error {
  /**
   * @param {string} message
   * @param {object} [options]
   * @param {RpcErrorKind} [options.kind] default 'server'
   * @param {number} [options.code] default: the kind's `ClientErrorCode`
   * @param {unknown} [options.data] the error object's `data`
   * @param {string} [options.method] the method of the call that failed
   * @param {unknown} [options.cause]
   */
  constructor(message, { kind = 'server', code, data, method, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'RpcError';
    /** @type {RpcErrorKind} */
    this.kind = kind;
    /** @type {number} */
    this.code = code ?? KIND_CODES[kind] ?? ErrorCode.INTERNAL_ERROR;
    /** @type {unknown} */
    this.data = data;
    /** @type {string | undefined} */
    this.method = method;
  }

  /**
   * An error from a JSON-RPC error object.
   * @param {{code?: number, message?: string, data?: unknown}} obj
   * @param {string} [method]
   * @returns {RpcError}
   */
  static fromObject(obj, method) {
    const o = obj && typeof obj === 'object' ? obj : {};
    const code = typeof o.code === 'number' ? o.code : ErrorCode.INTERNAL_ERROR;
    const message = typeof o.message === 'string' ? o.message : String(o.message ?? 'error');
    return new RpcError(message, { kind: 'server', code, data: o.data, method });
  }

  /** The JSON-RPC error object: `{code, message, data?}`. */
  toJSON() {
    const o = { code: this.code, message: this.message };
    if (this.data !== undefined) o.data = this.data;
    return o;
  }
}

/**
 * Interceptors of one kind, run in the order they were added.
 * @template F
 */
export class InterceptorManager {
  /** @type {Map<number, F>} */
  #handlers = new Map();
  #next = 0;

  /**
   * Add an interceptor.
   * @param {F} fn
   * @returns {number} its id, for `eject`
   */
  use(fn) {
    if (typeof fn !== 'function') throw new TypeError('an interceptor must be a function');
    const id = this.#next++;
    this.#handlers.set(id, fn);
    return id;
  }

  /**
   * Remove an interceptor.
   * @param {number} id what `use` returned
   * @returns {boolean} whether there was one
   */
  eject(id) {
    return this.#handlers.delete(id);
  }

  /** Remove them all. */
  clear() {
    this.#handlers.clear();
  }

  /** How many there are. */
  get size() {
    return this.#handlers.size;
  }

  /** @returns {F[]} the interceptors, in order */
  list() {
    return [...this.#handlers.values()];
  }
}

/**
 * What a request interceptor sees (and may change, or return a replacement
 * of): the method and parameters of a request or a notification the
 * application makes (the client's own `rpc.ping` and login do not go through
 * interceptors).
 * @typedef {object} OutgoingCall
 * @property {string} method
 * @property {unknown[] | Record<string, unknown> | undefined} params
 * @property {boolean} notification true for `notify()` (no answer)
 */

/**
 * A request interceptor: change the call (return it or a replacement, or
 * undefined to keep it) or throw to refuse it (the call is rejected with
 * the thrown RpcError, or with an RpcError of kind 'refused' whose cause is
 * what was thrown). May be async; calls go out in the order they were made.
 * @callback RequestInterceptor
 * @param {OutgoingCall} call
 * @returns {OutgoingCall | void | Promise<OutgoingCall | void>}
 */

/**
 * An answer from the server, as a response interceptor sees it.
 * @typedef {object} IncomingResponse
 * @property {number} id
 * @property {unknown} [result] present on success
 * @property {{code: number, message: string, data?: unknown}} [error] present on failure
 */

/**
 * A response interceptor: sees every answer to the application's requests
 * (a result or an error object) and may change it (return a replacement,
 * e.g. turn an error into a result or the other way round) or throw (the
 * call is rejected with what was thrown). May be async.
 * @callback ResponseInterceptor
 * @param {IncomingResponse} response
 * @param {OutgoingCall} call the request it answers
 * @returns {IncomingResponse | void | Promise<IncomingResponse | void>}
 */

/**
 * Backoff between reconnection attempts: the n-th attempt (from 1) waits
 * `initial * factor^(n-1)` ms, moved at random by up to ±`jitter` of itself,
 * and at most `max` ms. Defaults are socket.io's.
 * @typedef {object} BackoffOptions
 * @property {number} [initial] ms, default 1000
 * @property {number} [factor] default 2
 * @property {number} [max] ms, default 5000
 * @property {number} [jitter] 0..1, default 0.5
 */

/**
 * The heartbeat: `method` is called every `interval` ms (counted from the
 * previous answer); a server that does not answer within `timeout` ms is
 * declared dead: the socket is closed and the client reconnects.
 * @typedef {object} HeartbeatOptions
 * @property {number} [interval] ms, default 15000
 * @property {number} [timeout] ms, default 10000
 * @property {string} [method] default 'rpc.ping'
 */

/**
 * What `onReconnect` gets. Calls made with `ctx.request` / `ctx.notify` go
 * out at once, before the calls queued while the connection was away; calls
 * made with `client.request` inside the hook wait behind the queue (which is
 * sent after the hook returns), so awaiting one there would only time out.
 * @typedef {object} ReconnectContext
 * @property {RpcClient} client
 * @property {number} attempts how many attempts this reconnection took
 * @property {(method: string, params?: unknown[] | Record<string, unknown>, options?: RequestOptions) => Promise<unknown>} request
 * @property {(method: string, params?: unknown[] | Record<string, unknown>) => Promise<void>} notify
 */

/**
 * @typedef {object} RpcClientOptions
 * @property {typeof WebSocket} [WebSocket] the WebSocket class (default `globalThis.WebSocket`)
 * @property {string[]} [protocols] subprotocols to offer (default `['ws-rpc']`)
 * @property {string | (() => string | Promise<string>)} [token] a token (or a function
 *   giving one, asked before every connection attempt) sent as `tokenTransport` says
 * @property {'protocol' | 'query' | 'login'} [tokenTransport] how the token goes: offered
 *   as the subprotocol `token.<T>` (default), in the URL as `?token=T`, or as the
 *   first-message login `auth.login {"token": T}`
 * @property {(client: RpcClient) => unknown | Promise<unknown>} [login] gives the
 *   parameters of the first-message login call (`loginMethod`), on every connection,
 *   before anything else is sent (undefined: no login). A login the server refuses
 *   (an error object) closes the client: every call fails with a 'closed' error whose
 *   cause is the server's error.
 * @property {string} [loginMethod] default 'auth.login'
 * @property {number} [requestTimeout] ms, default 10000 (0 or Infinity: none). Counts
 *   from the call, so it includes the time spent in the queue.
 * @property {number} [connectTimeout] ms a socket may take to open, default 10000
 * @property {number} [queueLimit] calls that may wait for the connection, default 100
 * @property {number} [queueBytes] their total size (UTF-8 JSON), default 1 MiB
 * @property {boolean} [reconnect] default true
 * @property {number} [maxAttempts] consecutive failed attempts before giving up
 *   (the client closes), default Infinity
 * @property {BackoffOptions} [backoff]
 * @property {HeartbeatOptions | null | false} [heartbeat] null or false: none
 * @property {(ctx: ReconnectContext) => unknown | Promise<unknown>} [onReconnect] runs
 *   after every reconnection (not the first connection), after the login and before
 *   the subscriptions are made again and the queued calls go out (bounded by
 *   `requestTimeout`; an error it throws is reported as an 'error' event)
 */

/**
 * @typedef {object} RequestOptions
 * @property {number} [timeout] ms, overrides `requestTimeout` (0 or Infinity: none)
 * @property {AbortSignal} [signal] aborting rejects the call with kind 'aborted' (a queued
 *   call is taken out of the queue; a sent call's answer is ignored)
 */

/**
 * @typedef {object} SubscribeOptions
 * @property {string} [unsubscribe] the unsubscribe method (default: the first
 *   "subscribe" in the method's name replaced with "unsubscribe")
 * @property {(item: unknown) => void} [onItem] a callback for each item (same as `on('item', fn)`)
 * @property {number} [buffer] items kept for the async iterator while it is not
 *   reading, default 1024; past it the oldest are dropped (a 'dropped' event with `local: true`)
 * @property {number} [timeout] ms for the subscribe call
 */

/**
 * Events of an `RpcClient` (all `CustomEvent`s, the payload in `detail`):
 * - `open`: `{reconnected: boolean, attempts: number, protocol: string}`: the
 *   connection is open (after the login and the `onReconnect` hook).
 * - `close`: `{code, reason, wasClean, willReconnect}`: an open connection
 *   closed (or was declared dead), or the client closed.
 * - `reconnecting`: `{attempt, delay, at}`: the next attempt starts in `delay`
 *   ms (at `at`, a `Date.now()` time), for a countdown.
 * - `state`: `{state, previous}` on every `readyState` change.
 * - `error`: an Error: a socket error, a failed attempt, a heartbeat timeout,
 *   a login or hook failure, a message that is not JSON, an error answer
 *   without id.
 * - `notify:<method>`: a server notification; detail is its params.
 * - `notification`: every server notification, `{method, params}`.
 * @typedef {'open' | 'close' | 'reconnecting' | 'state' | 'error' | 'notification' | `notify:${string}`} RpcClientEventType
 */

const DEFAULT_BACKOFF = { initial: 1000, factor: 2, max: 5000, jitter: 0.5 };
const DEFAULT_HEARTBEAT = { interval: 15000, timeout: 10000, method: 'rpc.ping' };

const WS_OPEN = 1;

/** A timer this late (ms) means the event loop was not running: see the request timeout. */
const LATE_TIMER_MS = 50;

/** A monotonic clock in ms. */
const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/** CustomEvent where the platform has it, a small stand-in elsewhere. */
const DetailEvent =
  typeof CustomEvent === 'function'
    ? CustomEvent
    : class extends Event {
        constructor(type, init = {}) {
          super(type, init);
          this.detail = init.detail ?? null;
        }
      };

/** Report an exception thrown by a callback without stopping the caller. */
function reportLater(err) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(err);
  else setTimeout(() => { throw err; }, 0);
}

/** @param {string} s @returns {number} its length in UTF-8 */
function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

const decoder = typeof TextDecoder === 'function' ? new TextDecoder() : null;

/** @param {unknown} data a message event's data @returns {string | null} */
function messageText(data) {
  if (typeof data === 'string') return data;
  if (!decoder) return null;
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return decoder.decode(data);
  if (Array.isArray(data)) return data.map((d) => decoder.decode(d, { stream: true })).join('') + decoder.decode();
  return null;
}

/**
 * A ws:// or wss:// URL: relative URLs and http(s) ones are resolved against
 * the page's location (browsers).
 * @param {string | URL} url
 * @returns {string}
 */
function resolveUrl(url) {
  const base = globalThis.location?.href;
  const u = base ? new URL(String(url), base) : new URL(String(url));
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  return u.toString();
}

/**
 * The delay before attempt `attempt` (from 1).
 * @param {Required<BackoffOptions>} b
 * @param {number} attempt
 */
function backoffDelay(b, attempt) {
  let ms = b.initial * Math.pow(b.factor, attempt - 1);
  if (b.jitter > 0) ms *= 1 + b.jitter * (2 * Math.random() - 1);
  return Math.max(0, Math.round(Math.min(ms, b.max)));
}

/** @param {unknown} p */
function validParams(p) {
  return p === undefined || Array.isArray(p) || (typeof p === 'object' && p !== null);
}

/** @param {number | undefined} t */
function finiteTimeout(t) {
  return typeof t === 'number' && t > 0 && Number.isFinite(t);
}

const kDeliver = Symbol('deliver');
const kEnd = Symbol('end');
const kActivate = Symbol('activate');
const kDetach = Symbol('detach');
const kState = Symbol('state');

/**
 * One call on its way.
 * @typedef {object} Entry
 * @property {string} method
 * @property {unknown[] | Record<string, unknown> | undefined} params
 * @property {boolean} notification
 * @property {boolean} direct goes straight to the socket (never queued)
 * @property {boolean} intercept runs the interceptors
 * @property {number | null} id
 * @property {string} text
 * @property {number} bytes
 * @property {'new' | 'queued' | 'sent' | 'answered' | 'done'} stage
 * @property {(v: unknown) => void} resolve
 * @property {(e: unknown) => void} reject
 * @property {ReturnType<typeof setTimeout> | null} timer
 * @property {AbortSignal | undefined} signal
 * @property {(() => void) | null} onAbort
 * @property {OutgoingCall} call what the interceptors made of it
 * @property {WebSocket} [ws] the socket it was sent on
 */

/**
 * A JSON-RPC 2.0 client over one WebSocket connection at a time, which it
 * keeps open (reconnecting with backoff) until `close()`.
 *
 * Events: see {@link RpcClientEventType}.
 */
export class RpcClient extends EventTarget {
  static CONNECTING = CONNECTING;
  static OPEN = OPEN;
  static RECONNECTING = RECONNECTING;
  static CLOSED = CLOSED;

  /** Request interceptors (`use(fn)`, `eject(id)`) and response interceptors. */
  interceptors = {
    /** @type {InterceptorManager<RequestInterceptor>} */
    request: new InterceptorManager(),
    /** @type {InterceptorManager<ResponseInterceptor>} */
    response: new InterceptorManager(),
  };

  #url;
  #opts;
  /** @type {typeof WebSocket} */
  #WS;
  /** @type {ReadyStateName} */
  #state = CONNECTING;
  /** @type {WebSocket | null} */
  #ws = null;
  /** The socket has opened (it may still be logging in). */
  #socketOpen = false;
  #generation = 0;
  #everOpened = false;
  /** Failed attempts since the last open connection. */
  #attempt = 0;
  #nextId = 1;
  /** @type {Map<number, Entry>} */
  #pending = new Map();
  /** @type {Entry[]} */
  #queue = [];
  #queuedBytes = 0;
  /** Calls in the interceptor chain (they keep the order of the calls). */
  #chain = Promise.resolve();
  #chainDepth = 0;
  /** @type {Set<Subscription>} */
  #subs = new Set();
  /** @type {Map<unknown, Subscription>} */
  #subsById = new Map();
  /** Subscribe calls on their way, and items that came before their answer. */
  #subscribing = 0;
  /** @type {{method: string, params: any}[]} */
  #orphans = [];
  #reconnectTimer = null;
  #connectTimer = null;
  #heartbeatTimer = null;
  #protocol = '';
  /** The token of the current attempt (for a login with it). */
  #token;

  /**
   * Create the client and start connecting.
   * @param {string | URL | (() => string | URL | Promise<string | URL>)} url the
   *   server's WebSocket endpoint (`ws://host/rpc`); relative and http(s) URLs are
   *   resolved against the page; a function is asked before every attempt
   * @param {RpcClientOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== 'function') {
      throw new TypeError('no WebSocket implementation: pass one as the WebSocket option');
    }
    this.#WS = WS;
    this.#url = url;
    const hb = options.heartbeat === undefined ? DEFAULT_HEARTBEAT : options.heartbeat;
    this.#opts = {
      protocols: options.protocols ?? ['ws-rpc'],
      token: options.token,
      tokenTransport: options.tokenTransport ?? 'protocol',
      login: options.login,
      loginMethod: options.loginMethod ?? 'auth.login',
      requestTimeout: options.requestTimeout ?? 10000,
      connectTimeout: options.connectTimeout ?? 10000,
      queueLimit: options.queueLimit ?? 100,
      queueBytes: options.queueBytes ?? 1 << 20,
      reconnect: options.reconnect ?? true,
      maxAttempts: options.maxAttempts ?? Infinity,
      backoff: { ...DEFAULT_BACKOFF, ...(options.backoff ?? {}) },
      heartbeat: hb ? { ...DEFAULT_HEARTBEAT, ...hb } : null,
      onReconnect: options.onReconnect,
    };
    if (!['protocol', 'query', 'login'].includes(this.#opts.tokenTransport)) {
      throw new TypeError(`tokenTransport must be 'protocol', 'query' or 'login'`);
    }
    this.#connect();
  }

  /** @returns {ReadyStateName} */
  get readyState() {
    return this.#state;
  }

  /** The subprotocol the server selected on the current connection ('' if none). */
  get protocol() {
    return this.#protocol;
  }

  /** Bytes not yet sent: the socket's `bufferedAmount` plus the queue's bytes. */
  get bufferedAmount() {
    return (this.#ws?.bufferedAmount ?? 0) + this.#queuedBytes;
  }

  /** Requests sent and not yet answered. */
  get pendingCount() {
    return this.#pending.size;
  }

  /** Calls waiting in the queue for the connection. */
  get queuedCount() {
    return this.#queue.length;
  }

  /** The live subscriptions. @returns {Subscription[]} */
  get subscriptions() {
    return [...this.#subs];
  }

  /**
   * Call `method` and get its result.
   *
   * While the connection is not open the call waits in the queue (bounded:
   * when full it is rejected at once, kind 'queue-full') and goes out, in
   * order, once it is. If the connection drops after the call was sent and
   * before its answer, it is rejected with kind 'disconnected' (it may or may
   * not have run; it is not sent again).
   * @param {string} method
   * @param {unknown[] | Record<string, unknown>} [params] an array or an object
   * @param {RequestOptions} [options]
   * @returns {Promise<any>} the result; rejected with an RpcError
   */
  request(method, params, options = {}) {
    return this.#start(method, params, options, { notification: false }).promise;
  }

  /**
   * Send the notification `method` (no answer). Queued like a request while
   * the connection is not open.
   * @param {string} method
   * @param {unknown[] | Record<string, unknown>} [params]
   * @param {RequestOptions} [options]
   * @returns {Promise<void>} resolved once written to the socket
   */
  notify(method, params, options = {}) {
    return this.#start(method, params, options, { notification: true }).promise;
  }

  /**
   * Subscribe: call `method` (its result is the subscription id), then get
   * its items, as an async iterator (`for await (const item of sub)`) or with
   * callbacks (`sub.on('item', fn)`). Made again after every reconnect
   * ('resubscribed' event). Items that come before the first callback or
   * iterator are kept for the iterator.
   * @param {string} method e.g. 'subscribe_clock'
   * @param {unknown[] | Record<string, unknown>} [params]
   * @param {SubscribeOptions} [options]
   * @returns {Subscription}
   */
  subscribe(method, params, options = {}) {
    const sub = new Subscription(this, method, params, options, {
      unsubscribe: (s) => this.#unsubscribe(s),
      forget: (s) => this.#forget(s),
    });
    if (this.#state === CLOSED) {
      sub[kEnd]('closed', this.#closedError());
      return sub;
    }
    this.#subs.add(sub);
    this.#startSubscribe(sub, false);
    return sub;
  }

  /** Skip the backoff delay: start the next connection attempt now. */
  reconnectNow() {
    if (this.#reconnectTimer === null) return;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    this.#connect();
  }

  /**
   * Close for good: the socket is closed (`code`, default 1000), no more
   * reconnecting, and every call sent or queued is rejected (kind 'closed');
   * subscriptions end ('closed').
   * @param {number} [code]
   * @param {string} [reason]
   */
  close(code = 1000, reason = '') {
    if (this.#state === CLOSED) return;
    this.#shutdown(new RpcError('the client was closed', { kind: 'closed' }), code, reason);
  }

  // ---------------------------------------------------------------- calls

  /**
   * @param {string} method
   * @param {unknown} params
   * @param {RequestOptions} options
   * @param {{notification: boolean, direct?: boolean, intercept?: boolean}} how
   * @returns {{promise: Promise<any>, entry: Entry}}
   */
  #start(method, params, options, how) {
    /** @type {Entry} */
    const entry = {
      method,
      params: params === null ? undefined : /** @type {any} */ (params),
      notification: how.notification,
      direct: how.direct ?? false,
      intercept: how.intercept ?? true,
      id: null,
      text: '',
      bytes: 0,
      stage: 'new',
      resolve: null,
      reject: null,
      timer: null,
      signal: options?.signal,
      onAbort: null,
      call: null,
    };
    const promise = new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    if (this.#state === CLOSED) {
      this.#fail(entry, this.#closedError());
      return { promise, entry };
    }
    if (typeof method !== 'string') {
      this.#fail(entry, new RpcError('the method must be a string', { kind: 'invalid', method: String(method) }));
      return { promise, entry };
    }
    const timeout = options?.timeout ?? this.#opts.requestTimeout;
    if (finiteTimeout(timeout)) {
      const due = now() + timeout;
      let deferred = false;
      const expire = () => {
        entry.timer = null;
        if (!deferred && now() - due > LATE_TIMER_MS) {
          // The timer fired late: this page or process was asleep (a frozen tab, a
          // suspended laptop, a busy event loop). The answer may be waiting in the
          // socket already: let the pending events run first.
          deferred = true;
          entry.timer = setTimeout(expire, 0);
          return;
        }
        this.#fail(entry, new RpcError(`no answer to ${entry.method} within ${timeout} ms`, { kind: 'timeout', method: entry.method }));
      };
      entry.timer = setTimeout(expire, timeout);
    }
    if (entry.signal) {
      if (entry.signal.aborted) {
        this.#fail(entry, this.#abortError(entry));
        return { promise, entry };
      }
      entry.onAbort = () => this.#fail(entry, this.#abortError(entry));
      entry.signal.addEventListener('abort', entry.onAbort, { once: true });
    }
    const interceptors = entry.intercept ? this.interceptors.request.list() : [];
    if (interceptors.length === 0 && (entry.direct || this.#chainDepth === 0)) {
      entry.call = { method: entry.method, params: entry.params, notification: entry.notification };
      this.#dispatch(entry);
    } else if (entry.direct) {
      this.#intercept(entry, interceptors).then(
        () => this.#dispatch(entry),
        (err) => this.#fail(entry, refusal(err, entry.method)),
      );
    } else {
      this.#chainDepth++;
      this.#chain = this.#chain
        .then(() => this.#intercept(entry, interceptors))
        .then(
          () => this.#dispatch(entry),
          (err) => this.#fail(entry, refusal(err, entry.method)),
        )
        .finally(() => this.#chainDepth--);
    }
    return { promise, entry };
  }

  /** Run the request interceptors over the call. */
  async #intercept(entry, interceptors) {
    /** @type {OutgoingCall} */
    let call = { method: entry.method, params: entry.params, notification: entry.notification };
    for (const fn of interceptors) {
      if (entry.stage === 'done') return;
      const out = await fn(call);
      if (out !== undefined) call = out;
    }
    if (!call || typeof call !== 'object') throw new TypeError('a request interceptor returned something that is not a call');
    entry.method = call.method;
    entry.params = call.params === null ? undefined : call.params;
    entry.call = call;
  }

  /** Encode the call and send it, or queue it. */
  #dispatch(entry) {
    if (entry.stage === 'done') return;
    if (this.#state === CLOSED) return this.#fail(entry, this.#closedError());
    if (typeof entry.method !== 'string') {
      return this.#fail(entry, new RpcError('the method must be a string', { kind: 'invalid', method: String(entry.method) }));
    }
    if (!validParams(entry.params)) {
      return this.#fail(entry, new RpcError('params must be an array or an object', { kind: 'invalid', method: entry.method }));
    }
    const msg = { jsonrpc: '2.0' };
    if (!entry.notification) msg.id = entry.id = this.#nextId++;
    msg.method = entry.method;
    if (entry.params !== undefined) msg.params = entry.params;
    try {
      entry.text = JSON.stringify(msg);
    } catch (err) {
      return this.#fail(entry, new RpcError(`params cannot be encoded as JSON: ${err.message}`, { kind: 'invalid', method: entry.method, cause: err }));
    }
    entry.bytes = utf8Length(entry.text);
    if (entry.direct || this.#state === OPEN) {
      this.#transmit(entry);
      return;
    }
    if (this.#queue.length >= this.#opts.queueLimit || this.#queuedBytes + entry.bytes > this.#opts.queueBytes) {
      return this.#fail(
        entry,
        new RpcError(
          `the queue of calls waiting for the connection is full (${this.#queue.length} calls, ${this.#queuedBytes} bytes)`,
          { kind: 'queue-full', method: entry.method },
        ),
      );
    }
    entry.stage = 'queued';
    this.#queue.push(entry);
    this.#queuedBytes += entry.bytes;
  }

  /** Write the call on the socket. */
  #transmit(entry) {
    const ws = this.#ws;
    if (!ws || !this.#socketOpen || ws.readyState !== WS_OPEN) {
      return this.#fail(entry, new RpcError('not connected', { kind: 'disconnected', method: entry.method }));
    }
    try {
      ws.send(entry.text);
    } catch (err) {
      return this.#fail(entry, new RpcError(`the socket refused the message: ${err?.message ?? err}`, { kind: 'disconnected', method: entry.method, cause: err }));
    }
    if (entry.notification) {
      this.#finish(entry);
      entry.resolve(undefined);
      return;
    }
    entry.stage = 'sent';
    entry.ws = ws;
    this.#pending.set(entry.id, entry);
  }

  /** Send the queued calls, in order. */
  #flush() {
    while (this.#queue.length > 0 && this.#state === OPEN) {
      const entry = this.#queue.shift();
      this.#queuedBytes -= entry.bytes;
      entry.stage = 'new';
      this.#transmit(entry);
    }
  }

  /** Take the entry out of wherever it is and stop its timer. */
  #finish(entry) {
    if (entry.timer !== null) clearTimeout(entry.timer);
    entry.timer = null;
    if (entry.onAbort) entry.signal.removeEventListener('abort', entry.onAbort);
    entry.onAbort = null;
    if (entry.stage === 'queued') {
      const i = this.#queue.indexOf(entry);
      if (i >= 0) {
        this.#queue.splice(i, 1);
        this.#queuedBytes -= entry.bytes;
      }
    } else if (entry.stage === 'sent' && this.#pending.get(entry.id) === entry) {
      this.#pending.delete(entry.id);
    }
    entry.stage = 'done';
  }

  /** Reject the call (once). */
  #fail(entry, err) {
    if (entry.stage === 'done') return;
    this.#finish(entry);
    entry.reject(err);
  }

  #abortError(entry) {
    const reason = entry.signal?.reason;
    return new RpcError(`${entry.method} was aborted`, { kind: 'aborted', method: entry.method, cause: reason });
  }

  #closedError(cause) {
    return new RpcError('the client is closed', { kind: 'closed', cause });
  }

  /** Take a call that was not sent yet out of the way (rejected 'aborted'); false if it was sent. */
  #cancelQueued(entry) {
    if (entry.stage !== 'queued' && entry.stage !== 'new') return false;
    this.#fail(entry, new RpcError(`${entry.method} was cancelled`, { kind: 'aborted', method: entry.method }));
    return true;
  }

  // ------------------------------------------------------------- incoming

  #onMessage(data) {
    const text = messageText(data);
    if (text === null) return;
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (err) {
      this.#emit('error', new RpcError(`the server sent a message that is not JSON: ${err.message}`, { kind: 'server', code: ErrorCode.PARSE_ERROR, cause: err }));
      return;
    }
    if (Array.isArray(msg)) for (const m of msg) this.#handle(m);
    else this.#handle(msg);
  }

  #handle(msg) {
    if (!msg || typeof msg !== 'object') return;
    if (typeof msg.method === 'string') {
      if (msg.id !== undefined && msg.id !== null) {
        // A call from the server: this client serves no methods.
        this.#sendRaw({ jsonrpc: '2.0', id: msg.id, error: { code: ErrorCode.METHOD_NOT_FOUND, message: 'Method not found' } });
        return;
      }
      this.#onNotification(msg.method, msg.params);
      return;
    }
    if (!('result' in msg) && !('error' in msg)) return;
    if (msg.id === null || msg.id === undefined) {
      this.#emit('error', RpcError.fromObject(msg.error));
      return;
    }
    this.#onResponse(msg);
  }

  #onResponse(msg) {
    const entry = this.#pending.get(msg.id);
    if (!entry) return; // timed out, aborted: forgotten
    this.#pending.delete(msg.id);
    entry.stage = 'answered';
    const interceptors = entry.intercept ? this.interceptors.response.list() : [];
    if (interceptors.length === 0) {
      this.#settleResponse(entry, msg);
      return;
    }
    (async () => {
      /** @type {IncomingResponse} */
      let res = 'error' in msg && msg.error != null ? { id: msg.id, error: msg.error } : { id: msg.id, result: msg.result };
      for (const fn of interceptors) {
        const out = await fn(res, entry.call);
        if (out !== undefined) res = /** @type {IncomingResponse} */ (out);
        if (entry.stage === 'done') return;
      }
      this.#settleResponse(entry, res);
    })().catch((err) => {
      this.#fail(entry, err instanceof Error ? err : new RpcError(String(err), { kind: 'refused', method: entry.method, cause: err }));
    });
  }

  #settleResponse(entry, res) {
    if (entry.stage === 'done') return;
    this.#finish(entry);
    if (res && 'error' in res && res.error != null) entry.reject(RpcError.fromObject(res.error, entry.method));
    else entry.resolve(res?.result);
  }

  #onNotification(method, params) {
    if (params && typeof params === 'object' && !Array.isArray(params) && 'subscription' in params) {
      const sub = this.#subsById.get(params.subscription);
      if (sub) {
        sub[kDeliver](params);
        return;
      }
      if (this.#subscribing > 0 && this.#orphans.length < 1024) {
        // Its subscribe call's answer may still be in a response interceptor.
        this.#orphans.push({ method, params });
        return;
      }
    }
    this.#emit(`notify:${method}`, params);
    this.#emit('notification', { method, params });
  }

  #sendRaw(obj) {
    const ws = this.#ws;
    if (ws && this.#socketOpen && ws.readyState === WS_OPEN) {
      try {
        ws.send(JSON.stringify(obj));
      } catch {
        // the connection is going away; its close will be handled
      }
    }
  }

  // -------------------------------------------------------- subscriptions

  #startSubscribe(sub, again) {
    const { promise, entry } = this.#start(sub.method, sub.params, { timeout: sub[kState].timeout }, { notification: false, direct: again });
    const st = sub[kState];
    st.entry = entry;
    this.#subscribing++;
    promise.then(
      (id) => {
        st.entry = null;
        if (entry.ws !== this.#ws && sub.state !== 'ended') {
          // Answered on a connection that is gone since (its answer was held up in
          // a response interceptor): that id means nothing now.
          this.#doneSubscribing();
          if (this.#state === OPEN) this.#startSubscribe(sub, true);
          return;
        }
        if (sub.state === 'ended') {
          // Unsubscribed while the call was on its way: end it on the server.
          this.#start(sub.unsubscribeMethod, [id], {}, { notification: false, direct: true }).promise.catch(() => {});
        } else {
          const previous = st.lastId;
          this.#subsById.set(id, sub);
          sub[kActivate](id, previous);
        }
        this.#doneSubscribing();
      },
      (err) => {
        st.entry = null;
        this.#doneSubscribing();
        if (sub.state === 'ended') return;
        if (err.kind === 'disconnected') return; // made again on the next connection
        this.#subs.delete(sub);
        sub[kEnd](err.kind === 'closed' ? 'closed' : 'error', err);
      },
    );
  }

  #doneSubscribing() {
    this.#subscribing--;
    if (this.#orphans.length === 0) return;
    const orphans = this.#orphans;
    this.#orphans = [];
    for (const { method, params } of orphans) {
      if (this.#subscribing > 0 || this.#subsById.has(params.subscription)) this.#onNotification(method, params);
      else {
        this.#emit(`notify:${method}`, params);
        this.#emit('notification', { method, params });
      }
    }
  }

  /** @returns {Promise<boolean>} */
  #unsubscribe(sub) {
    if (sub.state === 'ended') return Promise.resolve(false);
    const st = sub[kState];
    const id = sub.id;
    this.#subs.delete(sub);
    if (id !== null) this.#subsById.delete(id);
    sub[kEnd]('unsubscribed', null);
    if (st.entry) {
      // Not sent yet: never send it. Sent: the answer's handler unsubscribes.
      this.#cancelQueued(st.entry);
      return Promise.resolve(false);
    }
    if (id === null || this.#state !== OPEN) return Promise.resolve(false);
    return this.#start(sub.unsubscribeMethod, [id], {}, { notification: false }).promise.then(
      (r) => r === true,
      () => false,
    );
  }

  /** The server ended it. */
  #forget(sub) {
    this.#subs.delete(sub);
    if (sub.id !== null && this.#subsById.get(sub.id) === sub) this.#subsById.delete(sub.id);
  }

  /** Make the subscriptions again on a new connection. */
  #resubscribe() {
    for (const sub of this.#subs) {
      if (sub.state !== 'ended' && !sub[kState].entry) this.#startSubscribe(sub, true);
    }
  }

  // ----------------------------------------------------------- connection

  #emit(type, detail) {
    this.dispatchEvent(new DetailEvent(type, { detail }));
  }

  #setState(state) {
    const previous = this.#state;
    if (previous === state) return;
    this.#state = state;
    this.#emit('state', { state, previous });
  }

  #connect() {
    const gen = ++this.#generation;
    this.#reconnectTimer = null;
    this.#openSocket(gen).catch((err) => {
      if (gen !== this.#generation || this.#state === CLOSED) return;
      const e = err instanceof Error ? err : new Error(String(err));
      this.#emit('error', e);
      // A URL or subprotocol the WebSocket constructor refuses (SyntaxError) will be
      // refused again, unless a function gives another one next time.
      const fixed = typeof this.#url !== 'function' && typeof this.#opts.token !== 'function';
      if (fixed && (e.name === 'SyntaxError' || e instanceof TypeError)) {
        this.#shutdown(this.#closedError(e), 1000, '');
        return;
      }
      this.#scheduleReconnect();
    });
  }

  async #openSocket(gen) {
    const o = this.#opts;
    const rawUrl = typeof this.#url === 'function' ? await this.#url() : this.#url;
    const token = typeof o.token === 'function' ? await o.token() : o.token;
    if (gen !== this.#generation || this.#state === CLOSED) return;
    let url = resolveUrl(rawUrl);
    const protocols = [...o.protocols];
    if (token != null && token !== '') {
      if (o.tokenTransport === 'protocol') protocols.push(`token.${token}`);
      else if (o.tokenTransport === 'query') {
        const u = new URL(url);
        u.searchParams.set('token', String(token));
        url = u.toString();
      }
    }
    this.#token = token;
    const ws = protocols.length > 0 ? new this.#WS(url, protocols) : new this.#WS(url);
    this.#ws = ws;
    this.#socketOpen = false;
    this.#protocol = '';
    try {
      ws.binaryType = 'arraybuffer';
    } catch {
      // not every implementation has it
    }
    ws.onopen = () => {
      if (this.#ws === ws) this.#onSocketOpen(ws);
    };
    ws.onmessage = (ev) => {
      if (this.#ws === ws) this.#onMessage(ev.data);
    };
    ws.onerror = (/** @type {any} */ ev) => {
      if (this.#ws !== ws) return;
      const cause = ev?.error ?? ev;
      const msg = ev?.message || ev?.error?.message || 'WebSocket error';
      this.#emit('error', new Error(`${this.#socketOpen ? 'connection' : 'connection attempt'} failed: ${msg}`, { cause }));
      // Before the open, an error is the end of the attempt. Browsers follow it with
      // a close event, but not every implementation does (Node 20's undici leaves
      // the socket CONNECTING): do not wait for one.
      if (this.#ws === ws && !this.#socketOpen) this.#drop(ws, 1006, 'connection failed');
    };
    ws.onclose = (ev) => {
      if (this.#ws === ws) this.#onSocketClose(ws, ev?.code ?? 1006, ev?.reason ?? '', ev?.wasClean ?? false);
    };
    if (finiteTimeout(o.connectTimeout)) {
      this.#connectTimer = setTimeout(() => {
        this.#connectTimer = null;
        if (this.#ws === ws && !this.#socketOpen) {
          this.#emit('error', new Error(`connection attempt timed out after ${o.connectTimeout} ms`));
          this.#drop(ws, 4000, 'connect timeout');
        }
      }, o.connectTimeout);
    }
  }

  async #onSocketOpen(ws) {
    clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    this.#socketOpen = true;
    this.#protocol = ws.protocol ?? '';
    const o = this.#opts;
    try {
      let loginParams;
      if (o.login) loginParams = await o.login(this);
      else if (o.tokenTransport === 'login' && this.#token != null && this.#token !== '') loginParams = { token: this.#token };
      if (this.#ws !== ws) return;
      if (loginParams !== undefined && loginParams !== null) {
        await this.#start(o.loginMethod, loginParams, {}, { notification: false, direct: true, intercept: false }).promise;
      }
    } catch (err) {
      if (this.#ws !== ws) return;
      const e = err instanceof Error ? err : new Error(String(err));
      this.#emit('error', e);
      if (e instanceof RpcError && e.kind === 'server') {
        // Refused: trying again would be refused again.
        this.#shutdown(this.#closedError(e), 1000, 'login refused');
      } else {
        this.#drop(ws, 4000, 'login failed');
      }
      return;
    }
    if (this.#ws !== ws) return;
    const reconnected = this.#everOpened;
    const attempts = this.#attempt;
    this.#everOpened = true;
    this.#attempt = 0;
    if (reconnected && o.onReconnect) {
      /** @type {ReconnectContext} */
      const ctx = {
        client: this,
        attempts,
        request: (method, params, options = {}) =>
          this.#start(method, params, options, { notification: false, direct: true }).promise,
        notify: (method, params, options = {}) =>
          this.#start(method, params, options, { notification: true, direct: true }).promise,
      };
      let timer;
      try {
        const limit = o.requestTimeout;
        await Promise.race([
          Promise.resolve().then(() => o.onReconnect(ctx)),
          new Promise((_, reject) => {
            if (finiteTimeout(limit)) timer = setTimeout(() => reject(new Error(`onReconnect did not finish within ${limit} ms`)), limit);
          }),
        ]);
      } catch (err) {
        if (this.#ws === ws) this.#emit('error', err instanceof Error ? err : new Error(String(err)));
      } finally {
        clearTimeout(timer);
      }
      if (this.#ws !== ws) return;
    }
    this.#resubscribe();
    // Open: the queue goes out before anyone hears of it, so that a call made
    // from an event listener cannot overtake the queued ones.
    const previous = this.#state;
    this.#state = OPEN;
    this.#flush();
    this.#startHeartbeat(ws);
    if (previous !== OPEN) this.#emit('state', { state: OPEN, previous });
    if (this.#ws === ws) this.#emit('open', { reconnected, attempts, protocol: this.#protocol });
  }

  #startHeartbeat(ws) {
    const hb = this.#opts.heartbeat;
    if (!hb || !finiteTimeout(hb.interval)) return;
    const tick = () => {
      this.#heartbeatTimer = null;
      if (this.#ws !== ws || this.#state !== OPEN) return;
      this.#start(hb.method, undefined, { timeout: hb.timeout }, { notification: false, direct: true, intercept: false }).promise.then(
        () => this.#nextBeat(ws, tick),
        (err) => {
          if (this.#ws !== ws) return;
          if (err.kind === 'timeout') {
            this.#emit('error', new RpcError(`heartbeat: no answer to ${hb.method} within ${hb.timeout} ms; the server is taken for dead`, { kind: 'timeout', method: hb.method }));
            this.#drop(ws, 4000, 'heartbeat timeout');
          } else if (err.kind === 'server') {
            this.#nextBeat(ws, tick); // an answer all the same
          }
        },
      );
    };
    this.#nextBeat(ws, tick);
  }

  #nextBeat(ws, tick) {
    if (this.#ws !== ws || this.#state !== OPEN) return;
    clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = setTimeout(tick, this.#opts.heartbeat.interval);
  }

  /** Give up on this socket ourselves (dead, stuck, failed): close it and carry on as if it had closed. */
  #drop(ws, code, reason) {
    // Forget it first: closing it may fire its events at once (undici does).
    if (this.#ws === ws) this.#onSocketClose(ws, code, reason, false);
    try {
      // (close() takes 1000 or 3000-4999 only.)
      if (code === 1000 || (code >= 3000 && code < 5000)) ws.close(code, reason);
      else ws.close();
    } catch {
      // already closing
    }
  }

  #onSocketClose(ws, code, reason, wasClean) {
    clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = null;
    const wasOpen = this.#socketOpen;
    this.#ws = null;
    this.#socketOpen = false;
    this.#protocol = '';
    this.#generation++;
    const inFlight = [...this.#pending.values()];
    this.#pending.clear();
    for (const entry of inFlight) {
      entry.stage = 'new';
      this.#fail(entry, new RpcError(`the connection closed before the answer to ${entry.method} came; it may or may not have run`, { kind: 'disconnected', method: entry.method, data: { code, reason } }));
    }
    for (const sub of this.#subs) {
      if (sub.id !== null) this.#subsById.delete(sub.id);
      sub[kDetach]();
    }
    this.#subsById.clear();
    if (this.#state === CLOSED) return;
    const willReconnect = this.#opts.reconnect && this.#attempt < this.#opts.maxAttempts;
    // (A failed attempt was reported by the socket's error event.)
    if (wasOpen) this.#emit('close', { code, reason, wasClean, willReconnect });
    if (/** @type {ReadyStateName} */ (this.#state) === CLOSED) return; // a listener closed it
    if (!willReconnect) {
      const why = this.#opts.reconnect ? `gave up after ${this.#attempt} attempts` : 'the connection closed';
      // The close event of an open connection said it all; else this is the client's.
      this.#shutdown(new RpcError(`the client is closed: ${why}`, { kind: 'closed', data: { code, reason } }), code, reason, !wasOpen);
      return;
    }
    this.#scheduleReconnect();
  }

  #scheduleReconnect() {
    if (this.#state === CLOSED) return;
    if (!this.#opts.reconnect || this.#attempt >= this.#opts.maxAttempts) {
      this.#shutdown(new RpcError(`the client is closed: gave up after ${this.#attempt} attempts`, { kind: 'closed' }), 1000, '');
      return;
    }
    const attempt = ++this.#attempt;
    const delay = backoffDelay(this.#opts.backoff, attempt);
    this.#setState(this.#everOpened ? RECONNECTING : CONNECTING);
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => this.#connect(), delay);
    this.#emit('reconnecting', { attempt, delay, at: Date.now() + delay });
  }

  /** Closed for good: reject everything with `err`. */
  #shutdown(err, code, reason, emitClose = true) {
    if (this.#state === CLOSED) return;
    const previous = this.#state;
    this.#state = CLOSED;
    this.#generation++;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = null;
    const ws = this.#ws;
    this.#ws = null;
    this.#socketOpen = false;
    if (ws) {
      try {
        ws.close(code, reason);
      } catch {
        try {
          ws.close();
        } catch {
          // gone already
        }
      }
    }
    const entries = [...this.#pending.values(), ...this.#queue];
    this.#pending.clear();
    this.#queue = [];
    this.#queuedBytes = 0;
    for (const entry of entries) {
      entry.stage = 'new';
      this.#fail(entry, err);
    }
    const subs = [...this.#subs];
    this.#subs.clear();
    this.#subsById.clear();
    for (const sub of subs) sub[kEnd]('closed', err);
    this.#emit('state', { state: CLOSED, previous });
    if (emitClose) this.#emit('close', { code, reason, wasClean: true, willReconnect: false });
  }
}

/** @param {unknown} err what a request interceptor threw */
function refusal(err, method) {
  if (err instanceof RpcError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new RpcError(`refused by a request interceptor: ${message}`, { kind: 'refused', method, cause: err });
}

/**
 * @typedef {'unsubscribed' | 'lagged' | 'closed' | 'error'} SubscriptionEndReason
 * - 'unsubscribed': `unsubscribe()` (or leaving a `for await` loop);
 * - 'lagged': the server ended it because the client fell behind (error -32003);
 * - 'closed': the client closed;
 * - 'error': the subscribe call failed, or the server ended it with another error.
 */

/**
 * Events of a Subscription (`sub.on(type, fn)`):
 * - 'item' (item): each item;
 * - 'subscribed' ({id}): the first subscribe call succeeded;
 * - 'resubscribed' ({id, previousId}): made again after a reconnect;
 * - 'dropped' ({dropped, total, local}): the server dropped `dropped` items
 *   (its lag policy), or (`local: true`) the iterator's buffer was full;
 * - 'end' ({reason, error}).
 * @typedef {'item' | 'subscribed' | 'resubscribed' | 'dropped' | 'end'} SubscriptionEventType
 */

/**
 * A subscription (`client.subscribe(...)`): an async iterator of its items,
 * and callbacks (`on`). `ready` resolves once the server confirmed it.
 * Leaving a `for await` loop early unsubscribes. The iteration ends when the
 * subscription ends: normally if unsubscribed or the client closed, with its
 * error if it lagged or failed.
 * @implements {AsyncIterableIterator<any>}
 */
export class Subscription {
  /** @type {Map<string, Set<Function>>} */
  #listeners = new Map();
  /** @type {any[]} */
  #buffer = [];
  /** @type {{resolve: Function, reject: Function}[]} */
  #waiters = [];
  #iterating = false;
  #errorThrown = false;
  #id = null;
  /** @type {'subscribing' | 'active' | 'ended'} */
  #state = 'subscribing';
  /** @type {SubscriptionEndReason | null} */
  #reason = null;
  /** @type {RpcError | null} */
  #error = null;
  #dropped = 0;
  #bufferLimit;
  /** @type {{unsubscribe: (sub: Subscription) => Promise<boolean>, forget: (sub: Subscription) => void}} */
  #hooks;
  #readyResolve;
  #readyReject;

  /**
   * Made by `RpcClient.subscribe`.
   * @param {RpcClient} client
   * @param {string} method
   * @param {unknown} params
   * @param {SubscribeOptions} options
   * @param {{unsubscribe: (sub: Subscription) => Promise<boolean>, forget: (sub: Subscription) => void}} hooks
   *   the client's side of `unsubscribe()` and of an end the server decided
   */
  constructor(client, method, params, options, hooks) {
    /** The client it belongs to. */
    this.client = client;
    /** The subscribe method. */
    this.method = method;
    /** Its parameters. */
    this.params = params;
    /** The unsubscribe method. */
    this.unsubscribeMethod = options.unsubscribe ?? String(method).replace('subscribe', 'unsubscribe');
    this.#bufferLimit = options.buffer ?? 1024;
    this.#hooks = hooks;
    /** @type {any} internal to the client */
    this[kState] = { entry: null, lastId: null, timeout: options.timeout };
    /** Resolved with the subscription when the server first confirms it; rejected if it ends before. */
    this.ready = new Promise((resolve, reject) => {
      this.#readyResolve = resolve;
      this.#readyReject = reject;
    });
    this.ready.catch(() => {}); // not an unhandled rejection when nobody waits on it
    if (options.onItem) this.on('item', options.onItem);
  }

  /** The id the server gave it on the current connection (null while (re)subscribing or ended). */
  get id() {
    return this.#id;
  }

  /** @returns {'subscribing' | 'active' | 'ended'} */
  get state() {
    return this.#state;
  }

  /** Why it ended (null while it lives). @returns {SubscriptionEndReason | null} */
  get reason() {
    return this.#reason;
  }

  /** The error it ended with ('lagged', 'error', 'closed'), else null. */
  get error() {
    return this.#error;
  }

  /** How many items the server said it dropped, in all. */
  get dropped() {
    return this.#dropped;
  }

  /**
   * Listen.
   * @param {SubscriptionEventType} type
   * @param {(detail: any) => void} fn
   * @returns {() => void} a function that removes the listener
   */
  on(type, fn) {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  /**
   * Stop listening.
   * @param {SubscriptionEventType} type
   * @param {(detail: any) => void} fn
   */
  off(type, fn) {
    this.#listeners.get(type)?.delete(fn);
  }

  /**
   * End it: the server is told (`unsubscribeMethod [id]`) when connected.
   * @returns {Promise<boolean>} whether the server confirmed it (never rejects)
   */
  unsubscribe() {
    return this.#hooks.unsubscribe(this);
  }

  /** @returns {AsyncIterableIterator<any>} */
  [Symbol.asyncIterator]() {
    this.#iterating = true;
    return this;
  }

  /** The next item. @returns {Promise<IteratorResult<any>>} */
  next() {
    this.#iterating = true;
    if (this.#buffer.length > 0) return Promise.resolve({ value: this.#buffer.shift(), done: false });
    if (this.#state === 'ended') {
      if (this.#error && (this.#reason === 'lagged' || this.#reason === 'error') && !this.#errorThrown) {
        this.#errorThrown = true;
        return Promise.reject(this.#error);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Leaving the loop: unsubscribes. @returns {Promise<IteratorResult<any>>} */
  return() {
    this.unsubscribe();
    this.#buffer = [];
    return Promise.resolve({ value: undefined, done: true });
  }

  #emit(type, detail) {
    const set = this.#listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(detail);
      } catch (err) {
        reportLater(err);
      }
    }
  }

  /** A notification for it: an item, a final error or a dropped count. */
  [kDeliver](params) {
    if (this.#state === 'ended') return;
    if ('result' in params) {
      const item = params.result;
      const waiter = this.#waiters.shift();
      if (waiter) waiter.resolve({ value: item, done: false });
      else if (this.#iterating || !this.#listeners.get('item')?.size) {
        this.#buffer.push(item);
        if (this.#buffer.length > this.#bufferLimit) {
          this.#buffer.shift();
          this.#emit('dropped', { dropped: 1, total: this.#dropped, local: true });
        }
      }
      this.#emit('item', item);
    } else if ('error' in params) {
      const err = RpcError.fromObject(params.error, this.method);
      this.#hooks.forget(this);
      this[kEnd](err.code === ErrorCode.SUBSCRIPTION_LAGGED ? 'lagged' : 'error', err);
    } else if ('dropped' in params) {
      const n = Number(params.dropped) || 0;
      this.#dropped += n;
      this.#emit('dropped', { dropped: n, total: this.#dropped, local: false });
    }
  }

  /** Confirmed by the server with `id`. */
  [kActivate](id, previousId) {
    if (this.#state === 'ended') return;
    const first = this[kState].lastId === null;
    this.#id = id;
    this[kState].lastId = id;
    this.#state = 'active';
    if (first) {
      this.#readyResolve(this);
      this.#emit('subscribed', { id });
    } else {
      this.#emit('resubscribed', { id, previousId });
    }
  }

  /** The connection dropped: the server's id is gone. */
  [kDetach]() {
    if (this.#state === 'ended') return;
    this.#id = null;
    this.#state = 'subscribing';
  }

  /** Ended, with `reason`. */
  [kEnd](reason, error) {
    if (this.#state === 'ended') return;
    this.#state = 'ended';
    this.#reason = reason;
    this.#error = error ?? null;
    this.#id = null;
    if (this[kState].lastId === null) {
      this.#readyReject(error ?? new RpcError(`the subscription ended (${reason}) before the server confirmed it`, { kind: 'aborted', method: this.method }));
    }
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) {
      if (this.#error && (reason === 'lagged' || reason === 'error') && !this.#errorThrown) {
        this.#errorThrown = true;
        w.reject(this.#error);
      } else {
        w.resolve({ value: undefined, done: true });
      }
    }
    this.#emit('end', { reason, error: this.#error });
  }
}
