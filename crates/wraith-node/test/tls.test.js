'use strict'
// The tls transport both ways, certificate checks, and connect() through an
// upstream SOCKS5 proxy (microsocks). Certificates come from the openssl CLI.
const test = require('node:test')
const assert = require('node:assert')
const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')
const { spawn } = require('node:child_process')
const {
  wraith, startServer, deadline, needTools, run, tempDir, echoServer, freePort, waitForPort, roundTrip
} = require('./helpers')

/** A test CA and a leaf for localhost / 127.0.0.1 that it signed. */
function makeCerts (dir, name) {
  const d = path.join(dir, name)
  fs.mkdirSync(d)
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
  run('openssl', ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', `/CN=${name} test CA`], { cwd: d })
  run('openssl', ['req', ...ec, '-keyout', 'key.pem', '-out', 'leaf.csr', '-subj', '/CN=localhost'], { cwd: d })
  fs.writeFileSync(path.join(d, 'ext.cnf'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n')
  run('openssl', ['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'cert.pem', '-days', '2', '-extfile', 'ext.cnf'], { cwd: d })
  return { ca: path.join(d, 'ca.pem'), cert: path.join(d, 'cert.pem'), key: path.join(d, 'key.pem') }
}

/** `sha256/<base64>` of the certificate's public key (SPKI), as --tls-pin takes it. */
function pinOf (certPath) {
  const spki = new crypto.X509Certificate(fs.readFileSync(certPath)).publicKey.export({ type: 'spki', format: 'der' })
  return 'sha256/' + crypto.createHash('sha256').update(spki).digest('base64')
}

/** A tls server whose certificate and key are passed as Buffers. */
async function startTlsServer (certs, extra = {}) {
  return startServer({
    transport: 'tls',
    tlsCert: fs.readFileSync(certs.cert),
    tlsKey: fs.readFileSync(certs.key),
    ...extra
  })
}

test('tls both ways: insecure and tlsCa connections carry data intact', async (t) => {
  if (!needTools(t, 'openssl')) return
  const certs = makeCerts(tempDir(), 'good')
  const { server, connectOptions } = await startTlsServer(certs)
  const echo = await echoServer()
  const target = `127.0.0.1:${echo.address().port}`
  try {
    const viaInsecure = await deadline(wraith.connect(connectOptions({ transport: 'tls', insecure: true, target })), 20_000, 'connect insecure')
    await roundTrip(viaInsecure, 8 * 1024 * 1024, 'tls insecure')
    // The CA as a path, then as a Buffer; the name checked is the server host.
    const viaCaPath = await deadline(wraith.connect(connectOptions({ transport: 'tls', tlsCa: certs.ca, target })), 20_000, 'connect tlsCa path')
    await roundTrip(viaCaPath, 8 * 1024 * 1024, 'tls with tlsCa as a path')
    const viaCaBuffer = await deadline(wraith.connect(connectOptions({
      server: server.address.replace('127.0.0.1', 'localhost'),
      transport: 'tls',
      tlsCa: fs.readFileSync(certs.ca),
      tlsServerName: 'localhost',
      target
    })), 20_000, 'connect tlsCa Buffer')
    await roundTrip(viaCaBuffer, 1024 * 1024, 'tls with tlsCa as a Buffer')
  } finally {
    echo.close()
    await server.close()
  }
})

test('tls: the connection event reports the tls transport; cert and key as paths', async (t) => {
  if (!needTools(t, 'openssl')) return
  const certs = makeCerts(tempDir(), 'paths')
  const { server, connectOptions } = await startServer({ transport: 'tls', tlsCert: certs.cert, tlsKey: certs.key })
  try {
    const accepted = new Promise((resolve) => server.on('connection', (stream, info) => resolve({ stream, info })))
    const client = await wraith.connect(connectOptions({ transport: 'tls', tlsPin: pinOf(certs.cert) }))
    const { stream, info } = await deadline(accepted, 10_000, "the 'connection' event")
    assert.strictEqual(info.transport, 'tls')
    stream.pipe(stream)
    await roundTrip(client, 256 * 1024, 'control channel echo over tls')
  } finally {
    await server.close()
  }
})

test('a server list: a dead tcp port first, then tls:// with tlsCa carries the channel', async (t) => {
  if (!needTools(t, 'openssl')) return
  const certs = makeCerts(tempDir(), 'list')
  const { server, connectOptions } = await startTlsServer(certs)
  const dead = await freePort()
  try {
    const accepted = new Promise((resolve) => server.on('connection', (stream, info) => {
      stream.pipe(stream)
      resolve(info)
    }))
    const tlsServer = 'tls://' + server.address.replace('127.0.0.1', 'localhost')
    // tlsCa applies to the tls:// server only; the tcp one takes none.
    const client = await deadline(wraith.connect(connectOptions({
      server: [`127.0.0.1:${dead}`, tlsServer], tlsCa: certs.ca
    })), 20_000, 'connect through the list')
    assert.strictEqual((await deadline(accepted, 10_000, "the tls server's 'connection' event")).transport, 'tls')
    await roundTrip(client, 256 * 1024, 'control channel echo over the second server')
    // The same flag rule as the CLI: a TLS option no server of the list uses.
    await assert.rejects(wraith.connect(connectOptions({ server: [`127.0.0.1:${dead}`, server.address], tlsCa: certs.ca })),
      { message: 'tlsCa is used by no server in server (give one a tls:// or wss:// scheme, or set transport)' })
  } finally {
    await server.close()
  }
})

test('ws and wss: serve() and connect() with a wsPath carry data; a wrong path rejects', async (t) => {
  if (!needTools(t, 'openssl')) return
  const certs = makeCerts(tempDir(), 'websocket')
  const echo = await echoServer()
  const target = `127.0.0.1:${echo.address().port}`
  const wsPath = '/' + crypto.randomBytes(16).toString('hex')
  const plain = await startServer({ transport: 'ws', wsPath })
  const secure = await startTlsServer(certs, { transport: 'wss', wsPath })
  try {
    // A control channel, echoed by the server's 'connection' handler.
    const accepted = new Promise((resolve) => plain.server.on('connection', (stream, info) => {
      stream.pipe(stream)
      resolve(info)
    }))
    const viaWs = await deadline(wraith.connect(plain.connectOptions({ transport: 'ws', wsPath })), 20_000, 'connect ws')
    assert.strictEqual((await deadline(accepted, 10_000, "the 'connection' event")).transport, 'ws')
    await roundTrip(viaWs, 1024 * 1024, 'ws control channel echo')
    const viaWss = await deadline(wraith.connect(secure.connectOptions({
      transport: 'wss', wsPath, wsHost: 'localhost', tlsCa: certs.ca, tlsServerName: 'localhost', target
    })), 20_000, 'connect wss')
    await roundTrip(viaWss, 4 * 1024 * 1024, 'wss')
    await assert.rejects(wraith.connect(plain.connectOptions({ transport: 'ws', wsPath: '/guess', target })),
      { message: /answered 404 Not Found to the WebSocket upgrade \(check wsPath\)/ })
    await assert.rejects(wraith.connect(plain.connectOptions({ wsPath })),
      { message: 'wsPath needs transport ws or wss' })
  } finally {
    await plain.server.close()
    await secure.server.close()
    echo.close()
  }
})

test('tls: a wrong tlsPin or an unrelated tlsCa rejects with the CLI message', async (t) => {
  if (!needTools(t, 'openssl')) return
  const dir = tempDir()
  const certs = makeCerts(dir, 'server')
  const other = makeCerts(dir, 'other')
  const { server, connectOptions } = await startTlsServer(certs)
  try {
    const addr = server.address
    await assert.rejects(
      deadline(wraith.connect(connectOptions({ transport: 'tls', tlsPin: pinOf(other.cert) })), 20_000, 'connect wrong pin'),
      (err) => {
        assert.strictEqual(err.message,
          `TLS certificate check failed for tls://${addr}: certificate does not match tlsPin (the server's key is ${pinOf(certs.cert)})`)
        return true
      })
    await assert.rejects(
      deadline(wraith.connect(connectOptions({ transport: 'tls', tlsCa: other.ca })), 20_000, 'connect other CA'),
      { message: `TLS certificate check failed for tls://${addr}: certificate not trusted (use tlsCa or tlsPin)` })
    await assert.rejects(
      wraith.connect(connectOptions({ transport: 'tls', tlsPin: 'sha256/nope' })),
      /^Error: invalid tlsPin value "sha256\/nope": expected sha256\//)
    // Plain SSH to a tls listener fails as a transport error, not a hang.
    await assert.rejects(
      deadline(wraith.connect(connectOptions({ connectTimeout: 5 })), 20_000, 'tcp to tls'),
      /^Error: /)
  } finally {
    await server.close()
  }
})

test('option errors are the CLI usage lines, with option names for flags', async () => {
  const { server, connectOptions } = await startServer()
  try {
    await assert.rejects(wraith.connect(connectOptions({ tlsCa: Buffer.from('x') })),
      { message: 'tlsCa needs transport tls or wss' })
    await assert.rejects(wraith.connect(connectOptions({ insecure: true })),
      { message: 'insecure needs transport tls or wss' })
    await assert.rejects(wraith.connect(connectOptions({ transport: 'tls', insecure: true, tlsPin: 'sha256/x' })),
      { message: 'insecure cannot be used with tlsCa or tlsPin' })
    await assert.rejects(wraith.connect(connectOptions({ transport: 'quic' })),
      { message: 'invalid transport value "quic": expected tcp, tls, ws, wss or iroh' })
    await assert.rejects(wraith.connect(connectOptions({ transport: 'iroh' })),
      { message: 'transport iroh needs peer <ticket>: the `ticket:` line `wraith serve --transport iroh` printed' })
    await assert.rejects(wraith.connect(connectOptions({ server: undefined, peer: 'abc' })),
      { message: 'peer needs transport iroh (other transports take server)' })
    await assert.rejects(wraith.connect(connectOptions({ proxy: 'ftp://x:1' })),
      /^Error: invalid proxy value/)
    await assert.rejects(wraith.connect(connectOptions({ server: 'h:x' })),
      { message: 'invalid server value "h:x": expected host[:port], e.g. example.com:2222 or [2001:db8::1]:22' })
  } finally {
    await server.close()
  }
  const k = wraith.generateKey()
  const base = { hostKey: Buffer.from(k.privateKey), authorizedKeys: Buffer.from(k.publicKey) }
  await assert.rejects(wraith.serve({ ...base, transport: 'tls' }),
    { message: 'transport tls needs tlsCert and tlsKey, or acmeDomain / acmeIp' })
  await assert.rejects(wraith.serve({ ...base, stealth: true }),
    { message: 'stealth needs transport tls or wss' })
  await assert.rejects(wraith.serve({ ...base, tlsCert: Buffer.from('x'), tlsKey: Buffer.from('x') }),
    { message: 'tlsCert and tlsKey need transport tls or wss' })
  await assert.rejects(wraith.serve({ ...base, acmeDomain: 'example.com' }),
    { message: 'acmeDomain and acmeIp need transport tls or wss' })
  await assert.rejects(wraith.serve({ ...base, transport: 'tls', tlsCert: Buffer.from('x'), tlsKey: Buffer.from('x') }),
    /^Error: cannot read TLS certificate from in-memory data \(tlsCert\): /)
  await assert.rejects(wraith.serve({ ...base, irohRelay: 'disabled' }),
    { message: 'irohRelay needs transport iroh' })
  await assert.rejects(wraith.serve({ ...base, hostKey: Buffer.from(k.publicKey) }),
    /^Error: cannot read host key from in-memory data \(hostKey\): this is a public key/)
})

/** microsocks on a free loopback port. */
async function startMicrosocks () {
  const port = await freePort()
  const child = spawn('microsocks', ['-i', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' })
  const exited = new Promise((resolve) => child.on('exit', resolve))
  try {
    await waitForPort(port)
  } catch (e) {
    child.kill()
    throw e
  }
  return { port, stop: async () => { child.kill(); await exited } }
}

test('proxy: connect() over tcp and tls through microsocks', async (t) => {
  if (!needTools(t, 'openssl', 'microsocks')) return
  const certs = makeCerts(tempDir(), 'proxy')
  const tcp = await startServer()
  const tls = await startTlsServer(certs)
  const socks = await startMicrosocks()
  const echo = await echoServer()
  const target = `127.0.0.1:${echo.address().port}`
  const proxy = `socks5://127.0.0.1:${socks.port}`
  try {
    const a = await deadline(wraith.connect(tcp.connectOptions({ proxy, target })), 20_000, 'tcp via proxy')
    await roundTrip(a, 2 * 1024 * 1024, 'tcp through microsocks')
    const b = await deadline(wraith.connect(tls.connectOptions({ proxy, target, transport: 'tls', tlsCa: certs.ca })), 20_000, 'tls via proxy')
    await roundTrip(b, 2 * 1024 * 1024, 'tls through microsocks')
    // The proxy really is in the path: once it is gone, connecting fails.
    await socks.stop()
    await assert.rejects(
      deadline(wraith.connect(tcp.connectOptions({ proxy, target })), 20_000, 'dead proxy'),
      (err) => {
        assert.match(err.message, new RegExp(`^cannot connect to ${tcp.server.address.replace(/\./g, '\\.')}: `))
        assert.match(err.message, /proxy/)
        return true
      })
  } finally {
    await socks.stop()
    echo.close()
    await tcp.server.close()
    await tls.server.close()
  }
})
