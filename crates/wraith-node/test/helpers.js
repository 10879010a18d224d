'use strict'
// Shared setup for the node tests: throwaway keys and a server in-process.
const wraith = require('..')

function keys () {
  const host = wraith.generateKey('host')
  const client = wraith.generateKey('client')
  const stranger = wraith.generateKey('stranger')
  return { host, client, stranger }
}

async function startServer () {
  const k = keys()
  const server = await wraith.serve({
    hostKey: Buffer.from(k.host.privateKey),
    authorizedKeys: Buffer.from(k.client.publicKey + '\n')
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

module.exports = { wraith, keys, startServer, deadline }
