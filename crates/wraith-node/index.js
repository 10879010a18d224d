'use strict'
// wraith for Node.js: a thin layer over the native addon (wraith.node).
// connect() gives a stream.Duplex over one SSH channel, serve() runs a
// server in this process, createWraithEventTarget() speaks the control
// channel's frames (4-byte big-endian length + JSON {type, id, payload}).

const { Duplex } = require('node:stream')
const { EventEmitter } = require('node:events')
const path = require('node:path')

const native = require(path.join(__dirname, 'wraith.node'))

const READ_CHUNK = 256 * 1024
const MAX_FRAME = 1024 * 1024

/** A Duplex over a native channel. Reads pull from SSH only when Node wants
 * more (read backpressure); a write completes only when SSH took the bytes
 * (write backpressure). end() sends EOF. */
class WraithStream extends Duplex {
  constructor (handle, options) {
    super({ highWaterMark: READ_CHUNK, ...options })
    this._handle = handle
    this._pulling = false
  }

  _read () {
    if (this._pulling) return
    this._pulling = true
    const pull = () => {
      this._handle.read(READ_CHUNK).then((buf) => {
        if (buf === null) {
          this._pulling = false
          this.push(null)
        } else if (this.push(buf)) {
          pull()
        } else {
          this._pulling = false
        }
      }, (err) => {
        this._pulling = false
        this.destroy(err)
      })
    }
    pull()
  }

  _write (chunk, _encoding, callback) {
    this._handle.write(chunk).then(() => callback(), callback)
  }

  _final (callback) {
    this._handle.end().then(() => callback(), callback)
  }

  _destroy (err, callback) {
    this._handle.close()
    callback(err)
  }
}

/** One SSH session and one channel to `target` (default wraith-control:0). */
async function connect (options) {
  const handle = await native.connect(normalizeConnect(options))
  return new WraithStream(handle)
}

function normalizeConnect (o) {
  const servers = typeof o?.server === 'string' || (Array.isArray(o?.server) && o.server.length > 0)
  if (!o || (!servers && o.peer === undefined)) {
    throw new TypeError('connect: options.server is required (a string, or a non-empty array of them)')
  }
  if (Array.isArray(o.server) && !o.server.every((s) => typeof s === 'string')) {
    throw new TypeError('connect: options.server must hold strings only')
  }
  if (o.identity === undefined) throw new TypeError('connect: options.identity is required')
  return {
    server: o.server,
    peer: o.peer,
    identity: o.identity,
    certificate: o.certificate,
    passphrase: o.passphrase,
    hostKey: o.hostKey,
    knownHosts: o.knownHosts,
    user: o.user,
    target: o.target,
    transport: o.transport,
    wsPath: o.wsPath,
    wsHost: o.wsHost,
    tlsServerName: o.tlsServerName,
    tlsCa: o.tlsCa,
    tlsPin: o.tlsPin,
    insecure: o.insecure,
    irohRelay: o.irohRelay,
    proxy: o.proxy,
    connectTimeout: o.connectTimeout
  }
}

/** One value or a list of them (repeatable CLI flags) as a list. */
function list (v) {
  if (v === undefined || v === null) return undefined
  return Array.isArray(v) ? v : [v]
}

/** A wraith server running in this process. Control channels
 * (wraith-control:0) join the server's event hub, unless a 'connection'
 * listener is added: from then on each one is emitted as
 * `(stream, { remoteAddress, endpointId, transport, keyFingerprint })` instead, and the
 * listener speaks the frames itself. */
class WraithServer extends EventEmitter {
  constructor (handle) {
    super()
    this._handle = handle
    this.address = handle.address
    this.endpointId = handle.endpointId ?? null
    this.ticket = handle.ticket ?? null
    this.warnings = handle.warnings
    this._taking = false
    this.on('newListener', (event) => {
      if (event === 'connection' && !this._taking) {
        this._taking = true
        this._handle.takeConnections()
        this._acceptLoop()
      }
    })
  }

  async _acceptLoop () {
    for (;;) {
      let h
      try {
        h = await this._handle.accept()
      } catch (err) {
        this.emit('error', err)
        return
      }
      if (h === null) return
      const info = { remoteAddress: h.remoteAddress, endpointId: h.endpointId ?? null, transport: h.transport, keyFingerprint: h.keyFingerprint }
      this.emit('connection', new WraithStream(h), info)
    }
  }

  /** Stop accepting, disconnect sessions gracefully; resolves when done. */
  async close () {
    await this._handle.close()
    this.emit('close')
  }
}

async function serve (options) {
  if (!options || options.hostKey === undefined || options.authorizedKeys === undefined) {
    throw new TypeError('serve: options.hostKey and options.authorizedKeys are required')
  }
  const handle = await native.serve({
    hostKey: options.hostKey,
    authorizedKeys: options.authorizedKeys,
    passphrase: options.passphrase,
    certAuthority: list(options.certAuthority),
    listen: options.listen,
    transport: options.transport,
    wsPath: options.wsPath,
    tlsCert: options.tlsCert,
    tlsKey: options.tlsKey,
    stealth: options.stealth,
    stealthFallback: options.stealthFallback,
    stealthTimeout: options.stealthTimeout,
    acmeDomain: list(options.acmeDomain),
    acmeIp: list(options.acmeIp),
    acmeEmail: options.acmeEmail,
    acmeCache: options.acmeCache,
    acmeDirectory: options.acmeDirectory,
    acmeCaRoot: options.acmeCaRoot,
    irohRelay: options.irohRelay,
    proxy: options.proxy,
    hubForAllKeys: options.hubForAllKeys,
    hub: options.hub,
    hubPrefix: options.hubPrefix,
    hubCreds: options.hubCreds,
    hubCa: options.hubCa
  })
  return new WraithServer(handle)
}

function encodeFrame (type, id, payload) {
  const body = Buffer.from(JSON.stringify({ type, id, payload: payload === undefined ? null : payload }))
  if (body.length > MAX_FRAME) throw new RangeError(`frame of ${body.length} bytes exceeds the limit of ${MAX_FRAME} bytes`)
  const head = Buffer.alloc(4)
  head.writeUInt32BE(body.length)
  return Buffer.concat([head, body])
}

/** An event received from the hub: `type`, `id` and the JSON `payload`
 * (also as `detail`, like a CustomEvent). */
class WraithEvent extends Event {
  constructor (type, init = {}) {
    super(type)
    this.id = init.id ?? ''
    this.payload = init.payload ?? null
  }

  get detail () { return this.payload }
}

/** EventTarget over a control channel stream: addEventListener subscribes,
 * removing the last listener of a type unsubscribes, dispatchEvent
 * publishes to the hub (other subscribers get it; it is not echoed back). */
class WraithEventTarget extends EventTarget {
  constructor (stream) {
    super()
    this._stream = stream
    this._counts = new Map()
    this._buf = Buffer.alloc(0)
    this._nextId = 1
    this._closed = false
    this._pending = new Map()
    this._inflight = new Set()
    stream.on('data', (chunk) => this._onData(chunk))
    stream.on('error', (err) => this._fail(err))
    stream.on('close', () => this._fail(null))
  }

  _send (type, payload, id = String(this._nextId++)) {
    if (this._closed) throw new Error('the event target is closed')
    this._stream.write(encodeFrame(type, id, payload))
    return id
  }

  _control (type, payload) {
    const id = this._send(type, payload)
    return new Promise((resolve, reject) => this._pending.set(id, { resolve, reject }))
  }

  addEventListener (type, listener, options) {
    super.addEventListener(type, listener, options)
    if (type.startsWith('__') || type === 'error' || type === 'close') return
    const n = (this._counts.get(type) || 0) + 1
    this._counts.set(type, n)
    if (n === 1) this._track(this._control('__subscribe', type))
  }

  _track (p) {
    this._inflight.add(p)
    p.then(() => this._inflight.delete(p), () => this._inflight.delete(p))
  }

  removeEventListener (type, listener, options) {
    super.removeEventListener(type, listener, options)
    const n = this._counts.get(type)
    if (!n) return
    if (n === 1) {
      this._counts.delete(type)
      if (!this._closed) this._track(this._control('__unsubscribe', type))
    } else {
      this._counts.set(type, n - 1)
    }
  }

  /** Resolves once every subscription asked for so far is in force. */
  async ready () {
    await Promise.all([...this._inflight])
  }

  /** Publish: `event.type`, with `event.payload` (or `event.detail`). */
  dispatchEvent (event) {
    const payload = event.payload !== undefined ? event.payload : (event.detail ?? null)
    this._send(event.type, payload, event.id || undefined)
    return true
  }

  close () {
    if (this._closed) return
    this._fail(null)
    this._stream.end()
  }

  _fail (err) {
    if (this._closed) return
    this._closed = true
    for (const p of this._pending.values()) p.reject(err || new Error('the control channel closed'))
    this._pending.clear()
    if (err) super.dispatchEvent(Object.assign(new Event('error'), { error: err }))
    super.dispatchEvent(new Event('close'))
  }

  _onData (chunk) {
    this._buf = this._buf.length ? Buffer.concat([this._buf, chunk]) : chunk
    while (this._buf.length >= 4) {
      const len = this._buf.readUInt32BE(0)
      if (len > MAX_FRAME) return this._protocolError(new Error(`frame of ${len} bytes exceeds the limit of ${MAX_FRAME} bytes`))
      if (this._buf.length < 4 + len) return
      const body = this._buf.subarray(4, 4 + len)
      this._buf = this._buf.subarray(4 + len)
      let frame
      try {
        frame = JSON.parse(body.toString('utf8'))
      } catch (e) {
        return this._protocolError(new Error(`frame is not valid JSON: ${e.message}`))
      }
      if (!frame || typeof frame.type !== 'string' || typeof frame.id !== 'string') {
        return this._protocolError(new Error('frame is not an envelope'))
      }
      this._onFrame(frame)
    }
  }

  _protocolError (err) {
    this._fail(err)
    this._stream.destroy()
  }

  _onFrame (frame) {
    if (frame.type === '__subscribed' || frame.type === '__unsubscribed') {
      const p = this._pending.get(frame.id)
      if (p) { this._pending.delete(frame.id); p.resolve() }
      return
    }
    if (frame.type === '__error') {
      this._fail(new Error(String(frame.payload)))
      return
    }
    super.dispatchEvent(new WraithEvent(frame.type, { id: frame.id, payload: frame.payload }))
  }
}

function createWraithEventTarget ({ stream } = {}) {
  if (!stream || typeof stream.write !== 'function') throw new TypeError('createWraithEventTarget: options.stream must be a Duplex')
  return new WraithEventTarget(stream)
}

module.exports = {
  connect,
  serve,
  createWraithEventTarget,
  generateKey: native.generateKey,
  encodeFrame,
  WraithStream,
  WraithServer,
  WraithEvent,
  WraithEventTarget
}
