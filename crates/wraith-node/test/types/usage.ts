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
