// Unit tests of sb.rpc (web/static/assets/switchboard.js): a call resolves with the
// backend's answer, rejects with the server's code, on its own timeout, and when the
// connection drops while it waits; the server's limit of 16 calls in flight. Run by Node's
// test runner against the fakes of fakes.mjs.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import { SwitchboardError, State } from '../static/assets/switchboard.js';
import { flush, setup } from './fakes.mjs';

function live(options) {
  const s = setup(options);
  s.sb.connect();
  s.net.last().welcome();
  return { ...s, ws: s.net.last() };
}

describe('rpc', () => {
  test('sends an rpc frame and resolves with the result data', async () => {
    const { sb, ws } = live();
    const call = sb.rpc('orders.get', { id: 'A-1001' });
    const f = ws.sent.at(-1);
    assert.deepEqual({ type: f.type, method: f.method, data: f.data }, { type: 'rpc', method: 'orders.get', data: { id: 'A-1001' } });
    ws.frame({ type: 'result', ref: f.ref, data: { id: 'A-1001', total: 42 } });
    assert.deepEqual(await call, { id: 'A-1001', total: 42 });
  });

  test('data defaults to null, and a null result resolves null', async () => {
    const { sb, ws } = live();
    const call = sb.rpc('whoami');
    assert.equal(ws.sent.at(-1).data, null);
    ws.frame({ type: 'result', ref: ws.sent.at(-1).ref, data: null });
    assert.equal(await call, null);
  });

  test('answers out of order settle their own calls', async () => {
    const { sb, ws } = live();
    const a = sb.rpc('echo', 'a');
    const b = sb.rpc('echo', 'b');
    const [fa, fb] = ws.sent.slice(-2);
    ws.frame({ type: 'result', ref: fb.ref, data: 'B' });
    ws.frame({ type: 'result', ref: fa.ref, data: 'A' });
    assert.deepEqual(await Promise.all([a, b]), ['A', 'B']);
  });

  test('rpc_failed rejects with the backend status', async () => {
    const { sb, ws } = live();
    const call = sb.rpc('orders.get', { id: 'B-2001' });
    ws.frame({ type: 'error', ref: ws.sent.at(-1).ref, code: 'rpc_failed', status: 404, message: 'the backend answered 404' });
    await assert.rejects(call, (err) => err instanceof SwitchboardError && err.code === 'rpc_failed' && err.status === 404 && err.request === 'rpc');
  });

  for (const code of ['unavailable', 'not_enabled']) {
    test(`${code} rejects with its code`, async () => {
      const { sb, ws } = live();
      const call = sb.rpc('echo', 1);
      ws.frame({ type: 'error', ref: ws.sent.at(-1).ref, code, message: `said ${code}` });
      await assert.rejects(call, (err) => err.code === code && err.message === `said ${code}` && err.status === undefined);
    });
  }

  test('times out on the client after its own timeout, saying the call may have run', async () => {
    const { sb, ws, clock } = live({ requestTimeout: 60_000 });
    const call = sb.rpc('slow', null, { timeout: 2500 });
    let settled = false;
    call.catch(() => {}).finally(() => (settled = true));
    clock.tick(2499);
    await flush();
    assert.equal(settled, false);
    clock.tick(1);
    await assert.rejects(call, (err) => err.code === 'timeout' && /2500 ms/.test(err.message) && /may or may not have run/.test(err.message));
    // A late result for it is dropped without noise.
    ws.frame({ type: 'result', ref: ws.sent.at(-1).ref, data: 1 });
  });

  test('a lost connection rejects a waiting call with disconnected, and it is not sent again', async () => {
    const { sb, net, ws, clock } = live();
    const call = sb.rpc('orders.get', { id: 'A-1' });
    ws.serverClose(1012);
    await assert.rejects(call, (err) => err.code === 'disconnected' && /may or may not have been run/.test(err.message));
    clock.tick(0);
    net.last().welcome();
    assert.deepEqual(net.last().sent, []);
  });

  test('a call made while connecting waits for the welcome', async () => {
    const { sb, net } = setup();
    const call = sb.rpc('echo', 'early');
    sb.connect();
    assert.deepEqual(net.last().sent, []);
    net.last().welcome();
    const f = net.last().sent[0];
    assert.equal(f.type, 'rpc');
    net.last().frame({ type: 'result', ref: f.ref, data: 'early' });
    assert.equal(await call, 'early');
  });

  test('messages keep arriving while a call waits', async () => {
    const { sb, ws, messages } = live();
    const call = sb.rpc('slow');
    ws.frame({ type: 'message', id: '500-0', from: 'alice', data: 'while waiting' });
    assert.equal(messages.length, 1);
    ws.frame({ type: 'result', ref: ws.sent.at(-1).ref, data: 'done' });
    assert.equal(await call, 'done');
  });

  test('the 17th call in flight is refused by the server with rate_limited; the 16 others go on', async () => {
    const { sb, ws } = live();
    const calls = Array.from({ length: 17 }, (_, i) => sb.rpc('echo', i));
    const frames = ws.sent.slice(-17);
    assert.equal(new Set(frames.map((f) => f.ref)).size, 17);
    ws.frame({ type: 'error', ref: frames[16].ref, code: 'rate_limited', message: 'at most 16 rpc calls may wait', retry_after_ms: 0 });
    await assert.rejects(calls[16], (err) => err.code === 'rate_limited' && err.retryAfterMs === 0);
    for (const f of frames.slice(0, 16).reverse()) ws.frame({ type: 'result', ref: f.ref, data: f.data * 10 });
    assert.deepEqual(await Promise.all(calls.slice(0, 16)), Array.from({ length: 16 }, (_, i) => i * 10));
    assert.equal(sb.state, State.LIVE);
  });
});
