'use strict'
// The iroh transport from Node: serve() prints nothing but reports its
// endpoint id and ticket; connect() dials the ticket. Offline: relays are
// disabled and both endpoints stay on 127.0.0.1.
const test = require('node:test')
const assert = require('node:assert')
const { wraith, startServer, deadline, echoServer, freePort, roundTrip } = require('./helpers')

const offline = { transport: 'iroh', irohRelay: 'disabled', listen: '127.0.0.1:0' }

test('serve and connect over iroh: 8 MB both ways, info names the endpoint', async () => {
  const { server, connectOptions } = await startServer(offline)
  try {
    assert.match(server.endpointId, /^[0-9a-f]{64}$/)
    assert.match(server.ticket, /^endpoint[a-z0-9]+$/)
    assert.ok(server.address.includes(server.endpointId), server.address)

    const echo = await echoServer()
    const opts = connectOptions({
      server: undefined,
      transport: 'iroh',
      peer: server.ticket,
      irohRelay: 'disabled',
      target: `127.0.0.1:${echo.address().port}`
    })
    const stream = await deadline(wraith.connect(opts), 30_000, 'connect over iroh')
    await roundTrip(stream, 8 * 1024 * 1024, 'iroh round trip')
    echo.close()

    // A control channel over iroh reports the client's endpoint id.
    const seen = new Promise((resolve) => server.once('connection', (s, info) => { s.end(); resolve(info) }))
    const control = await deadline(wraith.connect({ ...opts, target: undefined }), 30_000, 'control channel')
    const info = await deadline(seen, 30_000, 'connection event')
    assert.strictEqual(info.transport, 'iroh')
    assert.strictEqual(info.remoteAddress, null)
    assert.match(info.endpointId, /^[0-9a-f]{64}$/)
    assert.notStrictEqual(info.endpointId, server.endpointId)
    control.destroy()
  } finally {
    await server.close()
  }
})

test('iroh: the same host key gives the same endpoint id; a bare id without relays is refused', async () => {
  const k = wraith.generateKey('host')
  const base = { hostKey: Buffer.from(k.privateKey), authorizedKeys: Buffer.from(wraith.generateKey().publicKey), ...offline }
  const a = await wraith.serve(base)
  const id = a.endpointId
  await a.close()
  const b = await wraith.serve(base)
  try {
    assert.strictEqual(b.endpointId, id)
    await assert.rejects(wraith.connect({
      transport: 'iroh',
      peer: id,
      irohRelay: 'disabled',
      identity: Buffer.from(wraith.generateKey().privateKey)
    }), /^Error: invalid peer value .*give the `ticket:` line the server printed/)
    await assert.rejects(wraith.connect({
      transport: 'iroh',
      peer: b.ticket,
      server: '127.0.0.1:22',
      irohRelay: 'disabled',
      identity: Buffer.from(wraith.generateKey().privateKey)
    }), { message: 'server is not used with transport iroh: give the server\'s ticket with peer (or drop transport and give server iroh:<ticket>)' })
  } finally {
    await b.close()
  }
})

test('a server list: a dead tcp port first, then iroh:<ticket>', async () => {
  const { server, connectOptions } = await startServer(offline)
  const dead = await freePort()
  try {
    const seen = new Promise((resolve) => server.once('connection', (s, info) => { s.pipe(s); resolve(info) }))
    const stream = await deadline(wraith.connect(connectOptions({
      server: [`127.0.0.1:${dead}`, `iroh:${server.ticket}`],
      irohRelay: 'disabled'
    })), 30_000, 'connect through the list')
    const info = await deadline(seen, 30_000, 'connection event')
    assert.strictEqual(info.transport, 'iroh')
    await roundTrip(stream, 256 * 1024, 'control channel echo over the iroh server of the list')
  } finally {
    await server.close()
  }
})
