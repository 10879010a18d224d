'use strict'
// Two event targets exchanging typed events through the hub of serve().
const test = require('node:test')
const assert = require('node:assert')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { wraith, startServer, deadline } = require('./helpers')
const { WraithEvent } = wraith

function nextEvent (target, type) {
  return new Promise((resolve) => {
    const on = (e) => { target.removeEventListener(type, on); resolve(e) }
    target.addEventListener(type, on)
  })
}

test('two event targets exchange typed events through the hub', async () => {
  const { server, connectOptions } = await startServer()
  try {
    const a = wraith.createWraithEventTarget({ stream: await wraith.connect(connectOptions()) })
    const b = wraith.createWraithEventTarget({ stream: await wraith.connect(connectOptions()) })
    const seenByA = []
    // Every frame b receives, control frames included.
    const framesAtB = []
    const onFrame = b._onFrame.bind(b)
    b._onFrame = (f) => { framesAtB.push(`${f.type}:${f.id}`); onFrame(f) }
    a.addEventListener('greet', (e) => seenByA.push(e))
    const atB = nextEvent(b, 'greet')
    await deadline(Promise.all([a.ready(), b.ready()]), 10_000, 'subscriptions')

    a.dispatchEvent(new WraithEvent('greet', { id: 'g1', payload: { hello: 'world', n: [1, 2] } }))
    const got = await deadline(atB, 10_000, 'the event at b')
    assert.ok(got instanceof WraithEvent)
    assert.strictEqual(got.type, 'greet')
    assert.strictEqual(got.id, 'g1')
    assert.deepStrictEqual(got.payload, { hello: 'world', n: [1, 2] })

    // b's reply reaches a; a's own event was never echoed to it.
    b.dispatchEvent(new WraithEvent('greet', { id: 'g2', payload: 'hi back' }))
    await deadline((async () => { while (seenByA.length === 0) await new Promise((resolve) => setTimeout(resolve, 10)) })(), 10_000, 'the reply at a')
    assert.deepStrictEqual(seenByA.map((e) => e.id), ['g2'])

    // Unsubscribed (no listeners left at b): b no longer gets greet events,
    // but does get a marker published after them.
    await b.ready()
    const marker = nextEvent(b, 'marker')
    await b.ready()
    a.dispatchEvent(new WraithEvent('greet', { id: 'g3', payload: null }))
    a.dispatchEvent(new WraithEvent('marker', { id: 'm', payload: true }))
    const m = await deadline(marker, 10_000, 'the marker at b')
    assert.strictEqual(m.id, 'm')
    assert.ok(!framesAtB.includes('greet:g3'), `b got an event after unsubscribing: ${framesAtB}`)
    assert.ok(framesAtB.includes('greet:g1'))
    a.close()
    b.close()
  } finally {
    await server.close()
  }
})

test('the process exits on its own after close() (no hanging handles)', () => {
  const script = `
    const { startServer, wraith } = require(${JSON.stringify(path.join(__dirname, 'helpers.js'))});
    (async () => {
      const { server, connectOptions } = await startServer();
      const t = wraith.createWraithEventTarget({ stream: await wraith.connect(connectOptions()) });
      t.addEventListener('x', () => {});
      await t.ready();
      t.close();
      await server.close();
      console.log('closed');
    })().catch((e) => { console.error(e); process.exitCode = 1 });
  `
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 20_000, encoding: 'utf8' })
  assert.strictEqual(r.error, undefined, `child did not exit: ${r.error}`)
  assert.strictEqual(r.status, 0, `exit ${r.status} ${r.signal}\n${r.stderr}`)
  assert.match(r.stdout, /closed/)
})
