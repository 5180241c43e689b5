// What the Node-driven interop suites (node_interop.mjs,
// chromium_interop.mjs) share: failures, steps, timeouts, per-test
// cleanups, and the loop that runs the registered tests and prints one
// `ok NAME` / `FAIL NAME: reason` line each.

export class Failure extends Error {}

let currentStep = 'start';
/** Name what the test is doing now; a failure or timeout reports it. */
export const step = (s) => { currentStep = s; };
export const stepNow = () => currentStep;
export const expect = (cond, text) => { if (!cond) throw new Failure(text); };

export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Failure(`${what}: nothing within ${ms / 1000} s`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

// Per-test cleanups (processes, servers, pages), run after every test.
let cleanups = [];
export const defer = (fn) => cleanups.push(fn);

const TESTS = [];
/** A registrar for tests named `PREFIX/name`. */
export const tests = (prefix) => (name, fn) => TESTS.push([`${prefix}/${name}`, fn]);

/** Fail the whole suite before any test ran. */
export function setupFail(prefix, reason) {
  console.log(`FAIL ${prefix}/setup: ${reason}`);
  process.exit(1);
}

/**
 * Run every registered test whose name contains `filter`, each bounded by
 * `timeoutMs`, with its cleanups after it; returns the number that failed.
 */
export async function runTests({ filter = '', timeoutMs }) {
  let failed = 0;
  for (const [name, fn] of TESTS) {
    if (filter && !name.includes(filter)) continue;
    step('start');
    cleanups = [];
    let timer;
    try {
      await Promise.race([
        fn(),
        new Promise((_, reject) => { timer = setTimeout(() => reject(new Failure(`timed out after ${timeoutMs / 1000} s while ${currentStep}`)), timeoutMs); }),
      ]);
      console.log(`ok ${name}`);
    } catch (e) {
      failed++;
      const msg = e instanceof Failure ? e.message : `${e && e.name}: ${e && e.message} while ${currentStep}`;
      console.log(`FAIL ${name}: ${msg.replace(/\n/g, ' ')}`);
    } finally {
      clearTimeout(timer);
      for (const c of cleanups.reverse()) {
        try {
          await withTimeout(Promise.resolve().then(c), 20000, 'cleanup');
        } catch (e) {
          process.stderr.write(`# cleanup after ${name}: ${e.message}\n`);
        }
      }
    }
  }
  return failed;
}
