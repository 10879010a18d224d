'use strict'
// OpenSSH user certificates: a CA given to serve() as certAuthority (Buffer
// or path), certificates made by `ssh-keygen -s`, presented by connect()
// from `<identity>-cert.pub` or the certificate option.
const test = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const path = require('node:path')
const { wraith, deadline, needTools, run, tempDir } = require('./helpers')

/** A CA made by ssh-keygen, and a client key whose public half it signed
 * for principal `tester`: id, id.pub, id-cert.pub in `dir`. */
function makeCertificate (dir) {
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test CA', '-f', path.join(dir, 'ca')])
  const client = wraith.generateKey('client')
  const id = path.join(dir, 'id')
  fs.writeFileSync(id, client.privateKey, { mode: 0o600 })
  fs.writeFileSync(id + '.pub', client.publicKey + '\n')
  run('ssh-keygen', ['-q', '-s', path.join(dir, 'ca'), '-I', 'node test', '-n', 'tester', '-V', '-5m:+1h', id + '.pub'])
  // The CA line again with the `hub` option, as a --cert-authority file.
  const caHub = path.join(dir, 'ca-hub.pub')
  fs.writeFileSync(caHub, 'hub ' + fs.readFileSync(path.join(dir, 'ca.pub'), 'utf8'))
  return { ca: path.join(dir, 'ca.pub'), caHub, id, cert: id + '-cert.pub', client }
}

test('certAuthority as a Buffer: a certificate from ssh-keygen -s is accepted', async (t) => {
  if (!needTools(t, 'ssh-keygen')) return
  const dir = tempDir()
  const c = makeCertificate(dir)
  const host = wraith.generateKey('host')
  const stranger = wraith.generateKey('stranger')
  const server = await wraith.serve({
    hostKey: Buffer.from(host.privateKey),
    // The client's own key is NOT listed: only the certificate can let it in.
    authorizedKeys: Buffer.from(stranger.publicKey + '\n'),
    // `hub`: certificates from this CA may open control channels.
    certAuthority: Buffer.concat([Buffer.from('hub '), fs.readFileSync(c.ca)])
  })
  const base = { server: server.address, hostKey: host.publicKey, user: 'tester' }
  try {
    const accepted = new Promise((resolve) => server.on('connection', (stream, info) => resolve({ stream, info })))
    // identity as a path: <identity>-cert.pub next to it is presented.
    const s1 = await deadline(wraith.connect({ ...base, identity: c.id }), 20_000, 'connect with id-cert.pub')
    const { stream, info } = await deadline(accepted, 10_000, "the 'connection' event")
    assert.match(info.keyFingerprint, /^SHA256:/)
    stream.destroy()
    s1.destroy()
    // identity and certificate as Buffers.
    const s2 = await deadline(wraith.connect({
      ...base,
      identity: Buffer.from(c.client.privateKey),
      certificate: fs.readFileSync(c.cert)
    }), 20_000, 'connect with certificate Buffer')
    s2.destroy()
    // Without the certificate the key alone is not authorized.
    await assert.rejects(
      deadline(wraith.connect({ ...base, identity: Buffer.from(c.client.privateKey) }), 20_000, 'connect without certificate'),
      /^Error: authentication failed for user "tester"/)
    // A principal the certificate does not name is refused.
    await assert.rejects(
      deadline(wraith.connect({ ...base, user: 'root', identity: c.id }), 20_000, 'connect as another user'),
      /^Error: authentication failed for user "root"/)
  } finally {
    await server.close()
  }
})

test('certAuthority as a path list; a certificate for another key is refused locally', async (t) => {
  if (!needTools(t, 'ssh-keygen')) return
  const dir = tempDir()
  const c = makeCertificate(dir)
  const host = wraith.generateKey('host')
  const server = await wraith.serve({
    hostKey: Buffer.from(host.privateKey),
    authorizedKeys: Buffer.from(''),
    certAuthority: [c.caHub]
  })
  try {
    const s = await deadline(wraith.connect({ server: server.address, hostKey: host.publicKey, user: 'tester', identity: c.id }), 20_000, 'connect')
    s.destroy()
    const other = wraith.generateKey('other')
    await assert.rejects(
      wraith.connect({ server: server.address, hostKey: host.publicKey, user: 'tester', identity: Buffer.from(other.privateKey), certificate: c.cert }),
      { message: `cannot read certificate from ${c.cert} (certificate): the certificate is for another key than identity` })
  } finally {
    await server.close()
  }
  await assert.rejects(
    wraith.serve({ hostKey: Buffer.from(host.privateKey), authorizedKeys: Buffer.from(''), certAuthority: Buffer.from('# none\n') }),
    { message: 'cannot read certificate authorities from in-memory data (certAuthority): no usable CA key in it' })
})
