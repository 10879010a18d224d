'use strict'
// What a user gets from `npm pack`: the tarball installs with `npm install`
// in a fresh directory (no network: the package has no dependencies) and
// works there: a server and a client in that app tunnel to an echo server,
// and the TypeScript types come with it.
const test = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const path = require('node:path')
const { run, tempDir } = require('./helpers')

const root = path.join(__dirname, '..')

test('the npm pack tarball installs in a fresh directory and works', () => {
  const dir = tempDir()
  const packed = run('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: root, timeout: 120_000 })
  const tarball = path.join(dir, packed.trim().split('\n').pop())
  assert.ok(fs.existsSync(tarball), `npm pack wrote no ${tarball}`)

  const app = path.join(dir, 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }))
  run('npm', ['install', '--no-audit', '--no-fund', '--offline', tarball], { cwd: app, timeout: 120_000 })
  const installed = path.join(app, 'node_modules', '@wraith', 'node')
  for (const f of ['index.js', 'index.d.ts', 'wraith.node', 'README.md', 'package.json']) {
    assert.ok(fs.existsSync(path.join(installed, f)), `the package lacks ${f}`)
  }
  assert.ok(!fs.existsSync(path.join(installed, 'src')), 'the Rust sources were packed')
  assert.ok(!fs.existsSync(path.join(installed, 'test')), 'the tests were packed')

  fs.writeFileSync(path.join(app, 'main.js'), `
const net = require('node:net')
const wraith = require('@wraith/node')
;(async () => {
  const host = wraith.generateKey('host')
  const client = wraith.generateKey('client')
  const echo = net.createServer((s) => s.pipe(s))
  await new Promise((resolve) => echo.listen(0, '127.0.0.1', resolve))
  const server = await wraith.serve({
    hostKey: Buffer.from(host.privateKey),
    authorizedKeys: Buffer.from(client.publicKey + '\\n')
  })
  const stream = await wraith.connect({
    server: server.address,
    identity: Buffer.from(client.privateKey),
    hostKey: host.publicKey,
    user: 'app',
    target: '127.0.0.1:' + echo.address().port
  })
  stream.write('from the packed module')
  stream.once('data', async (d) => {
    console.log('echo: ' + d)
    stream.destroy()
    await server.close()
    echo.close()
    process.exit(0)
  })
})().catch((e) => { console.error(e); process.exit(1) })
`)
  const out = run(process.execPath, ['main.js'], { cwd: app, timeout: 60_000 })
  assert.match(out, /^echo: from the packed module$/m)
})
