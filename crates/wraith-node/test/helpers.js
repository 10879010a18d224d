'use strict'
// Shared setup for the node tests: throwaway keys and a server in-process.
const assert = require('node:assert')
const crypto = require('node:crypto')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { once } = require('node:events')
const { spawnSync } = require('node:child_process')
const wraith = require('..')

function keys () {
  const host = wraith.generateKey('host')
  const client = wraith.generateKey('client')
  const stranger = wraith.generateKey('stranger')
  return { host, client, stranger }
}

/** A server in this process (`serveExtra` adds or overrides options) and
 * connect() options that log in to it. */
async function startServer (serveExtra = {}) {
  const k = keys()
  const server = await wraith.serve({
    hostKey: Buffer.from(k.host.privateKey),
    // `hub`: the key may open control channels, which connect() does by default.
    authorizedKeys: Buffer.from('hub ' + k.client.publicKey + '\n'),
    ...serveExtra
  })
  const connectOptions = (extra = {}) => ({
    server: server.address,
    identity: Buffer.from(k.client.privateKey),
    hostKey: k.host.publicKey,
    user: 'tester',
    ...extra
  })
  return { server, keys: k, connectOptions }
}

/** Rejects after `ms` with `what` in the message. */
function deadline (promise, ms, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Is `name` on PATH? */
function haveTool (name) {
  return spawnSync('sh', ['-c', `command -v '${name}'`], { stdio: 'ignore' }).status === 0
}

/** True when every tool is installed. Otherwise skips the test, except
 * under CI=true, where a missing tool fails it (CI installs them all). */
function needTools (t, ...names) {
  const missing = names.filter((n) => !haveTool(n))
  if (missing.length === 0) return true
  if (process.env.CI === 'true') throw new Error(`required tool(s) missing: ${missing.join(', ')} (CI=true)`)
  t.skip(`missing tool(s): ${missing.join(', ')}`)
  return false
}

/** Run a command; throws with its stderr when it fails. */
function run (cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000, ...options })
  if (r.error) throw r.error
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`)
  return r.stdout
}

/** A fresh temporary directory, removed when the process exits. */
function tempDir () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wraith-node-'))
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A TCP echo server on loopback. */
function echoServer () {
  const srv = net.createServer((s) => {
    s.on('error', () => {})
    s.pipe(s)
  })
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)))
}

/** A port nothing listens on (bound once, then released). */
async function freePort () {
  const probe = net.createServer()
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const port = probe.address().port
  await new Promise((resolve) => probe.close(resolve))
  return port
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
async function waitForPort (port, ms = 10_000) {
  const until = Date.now() + ms
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) })
      s.on('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > until) throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Send `size` random bytes through `stream` to an echo and check the
 * SHA-256 of what comes back. */
async function roundTrip (stream, size, what) {
  const sent = crypto.createHash('sha256')
  const received = crypto.createHash('sha256')
  let got = 0
  const done = new Promise((resolve, reject) => {
    stream.on('data', (b) => { received.update(b); got += b.length })
    stream.on('end', resolve)
    stream.on('error', reject)
  })
  const writer = (async () => {
    const chunk = 64 * 1024
    for (let off = 0; off < size; off += chunk) {
      const b = crypto.randomBytes(Math.min(chunk, size - off))
      sent.update(b)
      if (!stream.write(b)) await once(stream, 'drain')
    }
    stream.end()
  })()
  await deadline(Promise.all([writer, done]), 60_000, what)
  assert.strictEqual(got, size, `${what}: byte count`)
  assert.strictEqual(received.digest('hex'), sent.digest('hex'), `${what}: SHA-256`)
}

module.exports = {
  wraith,
  keys,
  startServer,
  deadline,
  haveTool,
  needTools,
  run,
  tempDir,
  echoServer,
  freePort,
  waitForPort,
  roundTrip
}
