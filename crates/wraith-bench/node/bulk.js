'use strict'
// One bulk transfer through the Node addon's connect(), for wraith-bench's
// node figure. Speaks the bench targets' wire format (a big-endian u64 byte
// count first; the sink answers with the count it received), times the
// transfer from the first byte sent to the last byte delivered, and prints
// `mb_per_s <value>` (10^6 bytes per second).
//
//   node bulk.js <addon dir> '{"server":…,"identity":…,"hostKey":…,
//                              "target":"127.0.0.1:PORT","direction":"upload"|"download","bytes":N}'

const path = require('node:path')

const CHUNK = 256 * 1024

function lengthPrefix (bytes) {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(bytes))
  return b
}

/** Resolves with the next `n` bytes of `stream`, or rejects at its end. */
function readExactly (stream, n) {
  return new Promise((resolve, reject) => {
    const parts = []
    let got = 0
    const onData = (chunk) => {
      parts.push(chunk)
      got += chunk.length
      if (got >= n) {
        done()
        const all = Buffer.concat(parts)
        if (all.length > n) stream.unshift(all.subarray(n))
        resolve(all.subarray(0, n))
      }
    }
    const onEnd = () => { done(); reject(new Error(`the stream ended after ${got} of ${n} bytes`)) }
    const onError = (e) => { done(); reject(e) }
    const done = () => {
      stream.off('data', onData)
      stream.off('end', onEnd)
      stream.off('error', onError)
      stream.pause()
    }
    stream.on('data', onData)
    stream.on('end', onEnd)
    stream.on('error', onError)
    stream.resume()
  })
}

async function upload (stream, bytes) {
  const zeros = Buffer.alloc(CHUNK)
  let left = bytes
  if (!stream.write(lengthPrefix(bytes))) await drained(stream)
  while (left > 0) {
    const n = Math.min(left, CHUNK)
    left -= n
    if (!stream.write(n === CHUNK ? zeros : zeros.subarray(0, n))) await drained(stream)
  }
  const ack = await readExactly(stream, 8)
  const delivered = ack.readBigUInt64BE()
  if (delivered !== BigInt(bytes)) throw new Error(`the sink received ${delivered} of ${bytes} bytes`)
}

function drained (stream) {
  return new Promise((resolve, reject) => {
    const onDrain = () => { stream.off('error', onError); resolve() }
    const onError = (e) => { stream.off('drain', onDrain); reject(e) }
    stream.once('drain', onDrain)
    stream.once('error', onError)
  })
}

async function download (stream, bytes) {
  stream.write(lengthPrefix(bytes))
  await new Promise((resolve, reject) => {
    let got = 0
    stream.on('data', (chunk) => {
      got += chunk.length
      if (got >= bytes) resolve()
    })
    stream.on('end', () => reject(new Error(`the download ended after ${got} of ${bytes} bytes`)))
    stream.on('error', reject)
  })
}

async function main () {
  const [addonDir, json] = process.argv.slice(2)
  const o = JSON.parse(json)
  const wraith = require(path.resolve(addonDir))
  const stream = await wraith.connect({
    server: o.server,
    identity: o.identity,
    hostKey: o.hostKey,
    target: o.target
  })
  const start = process.hrtime.bigint()
  if (o.direction === 'upload') await upload(stream, o.bytes)
  else await download(stream, o.bytes)
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  stream.destroy()
  console.log(`mb_per_s ${(o.bytes / seconds / 1e6).toFixed(3)}`)
}

main().then(() => process.exit(0), (e) => {
  console.error(`error: ${e.message}`)
  process.exit(1)
})
