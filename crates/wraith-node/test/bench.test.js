'use strict'
// The benchmark's Node figure runs: wraith-bench --only node moves bytes
// both ways through this addon's connect() and through the CLI's
// --forward, and reports the ratio. It asserts no speed (a debug CLI on a
// busy machine); the figures are for the full benchmark.
const test = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const path = require('node:path')
const { run, tempDir } = require('./helpers')

const debug = path.join(__dirname, '..', '..', '..', 'target', 'debug')

test('wraith-bench --only node measures connect() beside the CLI', (t) => {
  const bench = path.join(debug, 'wraith-bench')
  const bin = process.env.WRAITH_BIN || path.join(debug, 'wraith')
  for (const f of [bench, bin]) {
    if (!fs.existsSync(f)) {
      if (process.env.CI === 'true') throw new Error(`no ${f} (CI=true; cargo test --workspace builds it)`)
      t.skip(`no ${f}`)
      return
    }
  }
  const json = path.join(tempDir(), 'results.json')
  run(bench, ['--quick', '--only', 'node', '--bulk-size', '4MiB', '--wraith', bin, '--json', json],
    { timeout: 120_000 })
  const rows = JSON.parse(fs.readFileSync(json, 'utf8')).rows
  for (const figure of ['node_bulk_upload', 'node_bulk_download']) {
    for (const tunnel of ['wraith-cli-forward', 'wraith-node-connect']) {
      const row = rows.find((r) => r.figure === figure && r.tunnel === tunnel)
      assert.ok(row, `no ${figure} row for ${tunnel}`)
      assert.strictEqual(row.error, null, `${figure} ${tunnel}: ${row.error}`)
      assert.ok(row.value > 0, `${figure} ${tunnel}: ${row.value}`)
    }
    const js = rows.find((r) => r.figure === figure && r.tunnel === 'wraith-node-connect')
    assert.ok(js.detail.ratio_vs_cli > 0, `${figure}: no ratio to the CLI`)
  }
})
