// Compile-only check of index.d.ts (npm test runs `tsc --noEmit` on it).
import { connect, serve, createWraithEventTarget, WraithEvent, type ConnectionInfo } from '../..'

interface Events {
  chat: { text: string }
  tick: number
}

export async function example (): Promise<void> {
  const server = await serve({ hostKey: Buffer.from(''), authorizedKeys: './authorized_keys' })
  server.on('connection', (stream, info: ConnectionInfo) => {
    const fp: string = info.keyFingerprint
    stream.write(fp)
  })
  const stream = await connect({ server: server.address, identity: './id', hostKey: 'SHA256:x' })
  // Several servers: the first that works is used.
  const either = await connect({ server: ['a.example:22', 'tls://b.example', 'iroh:endpoint…'], identity: './id' })
  either.end()
  const events = createWraithEventTarget<Events>({ stream })
  events.addEventListener('chat', (e) => {
    const text: string = e.payload.text
    console.log(text, e.id)
  })
  events.addEventListener('tick', (e) => {
    const n: number = e.detail
    console.log(n + 1)
  })
  await events.ready()
  events.dispatchEvent(new WraithEvent('chat', { id: '1', payload: { text: 'hi' } }))
  events.close()
  await server.close()
}

export async function tlsExample (): Promise<void> {
  const server = await serve({
    hostKey: './host_key',
    authorizedKeys: Buffer.from(''),
    certAuthority: [Buffer.from('ssh-ed25519 AAAA ca'), './ca.pub'],
    transport: 'tls',
    tlsCert: './cert.pem',
    tlsKey: Buffer.from(''),
    stealth: true,
    stealthTimeout: 60,
    listen: '0.0.0.0:443'
  })
  const acme = await serve({
    hostKey: './host_key',
    authorizedKeys: './authorized_keys',
    transport: 'tls',
    acmeDomain: ['example.com'],
    acmeEmail: 'me@example.com',
    acmeCache: '/var/lib/wraith/acme',
    acmeDirectory: 'https://acme-staging-v02.api.letsencrypt.org/directory'
  })
  const stream = await connect({
    server: 'example.com',
    identity: Buffer.from(''),
    certificate: './id-cert.pub',
    transport: 'tls',
    tlsServerName: 'example.com',
    tlsCa: Buffer.from(''),
    tlsPin: 'sha256/x',
    insecure: false,
    proxy: 'socks5://127.0.0.1:1080'
  })
  stream.end()
  await server.close()
  await acme.close()
}
