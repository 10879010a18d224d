'use strict'
// Two serve() servers in this process share their hub through a real
// nats-server (`hub` option): an event published on a channel of one
// reaches a subscriber on the other.
const test = require('node:test')
const assert = require('node:assert')
const net = require('node:net')
const { spawn } = require('node:child_process')
const { wraith, startServer, deadline, haveTool } = require('./helpers')
const { WraithEvent } = wraith

function freePort () {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)) })
    s.on('error', reject)
  })
}

async function waitForPort (port) {
  for (let i = 0; i < 200; i++) {
    const up = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => { c.destroy(); resolve(true) })
      c.on('error', () => resolve(false))
    })
    if (up) return
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error(`nats-server did not listen on ${port}`)
}

test('serve({ hub }) shares events with another server through NATS', async (t) => {
  if (!haveTool('nats-server')) {
    if (process.env.CI === 'true') assert.fail('nats-server is required under CI')
    t.skip('nats-server not installed')
    return
  }
  const port = await freePort()
  const broker = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' })
  try {
    await waitForPort(port)
    const hub = `nats://127.0.0.1:${port}`
    const a = await startServer({ hub, hubPrefix: 'node-test' })
    const b = await startServer({ hub, hubPrefix: 'node-test' })
    try {
      const atA = wraith.createWraithEventTarget({ stream: await wraith.connect(a.connectOptions()) })
      const atB = wraith.createWraithEventTarget({ stream: await wraith.connect(b.connectOptions()) })
      const got = new Promise((resolve) => atA.addEventListener('crossed', resolve))
      await deadline(atA.ready(), 10_000, 'the subscription on A')
      // The servers join the broker in the background: publish until it crosses.
      const sent = setInterval(() => atB.dispatchEvent(new WraithEvent('crossed', { id: 'x1', payload: { n: 1 } })), 100)
      try {
        const e = await deadline(got, 15_000, 'the event from B at A')
        assert.strictEqual(e.id, 'x1')
        assert.deepStrictEqual(e.payload, { n: 1 })
      } finally {
        clearInterval(sent)
      }
      atA.close?.()
      atB.close?.()
    } finally {
      await a.server.close()
      await b.server.close()
    }
    await assert.rejects(
      wraith.serve({ ...{ hostKey: Buffer.from(a.keys.host.privateKey), authorizedKeys: Buffer.from('') }, hub: 'http://x' }),
      /invalid hub value "http:\/\/x"/
    )
    await assert.rejects(
      wraith.serve({ hostKey: Buffer.from(a.keys.host.privateKey), authorizedKeys: Buffer.from(''), hubPrefix: 'p' }),
      /hubPrefix, hubCreds and hubCa need hub/
    )
  } finally {
    broker.kill()
  }
})
