// The streamed restore scenario of the bench (scripts/bench/restore-stream.ts):
// the log lines and probe reports it reads its figures from, its sampler of
// RUNNER_TEMP, and its table's ratios.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { describe, expect, test } from '@jest/globals'

import { parseActionLog, probeFigures } from '../scripts/bench/action.js'
import { restoreStreamReport, sampleDirPeak, type RestoreSample } from '../scripts/bench/restore-stream.js'

const PROBE = new URL('../scripts/bench/rss-probe.cjs', import.meta.url).pathname

describe('what the scenario reads', () => {
  test('main: a streamed restore and one from a file', () => {
    const log = parseActionLog(
      [
        'bench-x-pkgs: restored k-0123456789abcdef (exact, 512.0 MiB, 10234 entries, streamed into the build, 7.4 s)',
        'bench-x-tools: restored t-0123456789abcdef (exact, 64.0 MiB, 12 entries, 0.9 s)',
        'Restore to ready: 8.1 s for 2 mount(s) (slowest restore 7.4 s, inject 7.9 s, overlapped)'
      ].join('\n')
    )
    expect(log.restored).toEqual([
      { id: 'bench-x-pkgs', key: 'k-0123456789abcdef', entries: 10234, seconds: 7.4, deltas: 0, streamed: true },
      { id: 'bench-x-tools', key: 't-0123456789abcdef', entries: 12, seconds: 0.9, deltas: 0 }
    ])
    expect(log.restored[1]).not.toHaveProperty('streamed')
    expect(log.restoreToReady).toEqual({ seconds: 8.1, slowestRestore: 7.4, inject: 7.9 })
  })

  test('probe lines: the highest peak and the highest write_bytes, not their sums', () => {
    const text = [
      JSON.stringify({ pid: 1, maxRssKiB: 1000, writeBytes: 500 }),
      JSON.stringify({ pid: 2, maxRssKiB: 3000, writeBytes: 200 }),
      JSON.stringify({ pid: 3, maxRssKiB: 2000 }),
      ''
    ].join('\n')
    expect(probeFigures(text)).toEqual({ maxRssKiB: 3000, writeBytes: 500 })
    expect(probeFigures(`${JSON.stringify({ pid: 1, maxRssKiB: 10 })}\n`)).toEqual({ maxRssKiB: 10 })
    expect(probeFigures('')).toEqual({})
  })

  const hasIo = existsSync('/proc/self/io')
  ;(hasIo ? test : test.skip)('the probe counts what the process and its reaped children wrote to storage', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bmc-probe-'))
    try {
      const report = join(dir, 'report.jsonl')
      const script = [
        "const fs = require('node:fs')",
        `fs.writeFileSync(${JSON.stringify(join(dir, 'a'))}, Buffer.alloc(8 << 20, 1))`,
        `require('node:child_process').execFileSync('dd', ['if=/dev/zero', 'of=${join(dir, 'b')}', 'bs=1M', 'count=4'], { stdio: 'ignore' })`
      ].join('\n')
      const r = spawnSync(process.execPath, ['--require', PROBE, '-e', script], { env: { ...process.env, BMC_BENCH_RSS_FILE: report } })
      expect(r.status).toBe(0)
      const figures = probeFigures(readFileSync(report, 'utf8'))
      expect(figures.maxRssKiB).toBeGreaterThan(0)
      expect(figures.writeBytes).toBeGreaterThanOrEqual(12 << 20)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('the RUNNER_TEMP sampler', () => {
  test('peak growth over what the directory held at the start, files written and deleted included', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bmc-sample-'))
    try {
      writeFileSync(join(dir, 'before'), Buffer.alloc(1 << 20, 1))
      const sampler = sampleDirPeak(dir, 20)
      await new Promise(resolve => setTimeout(resolve, 60))
      const file = join(dir, 'sub-archive')
      writeFileSync(file, Buffer.alloc(4 << 20, 1))
      await new Promise(resolve => setTimeout(resolve, 150))
      rmSync(file)
      await new Promise(resolve => setTimeout(resolve, 60))
      sampler.stop()
      const peak = await sampler.peak
      expect(peak).toBeGreaterThanOrEqual(4 << 20)
      expect(peak).toBeLessThan(5 << 20)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('the table', () => {
  const sample = (mode: RestoreSample['mode'], round: number, ready: number, inject: number, writeBytes: number): RestoreSample => ({
    mode,
    round,
    seconds: ready + 2,
    ready,
    slowestRestore: ready - 1,
    inject,
    restores: { pkgs: 1, tools: 2, build: 3 },
    writeBytes,
    runnerTempPeak: writeBytes,
    maxRssKiB: 100 * 1024
  })
  const tree = 1024 ** 3

  test('streamed restore to ready against the file mode: medians of the rounds, the target judged', () => {
    const text = restoreStreamReport({
      sizeMiB: 1024,
      files: 20000,
      treeBytes: tree,
      samples: [sample('file', 1, 30, 20, tree), sample('streamed', 1, 21, 21, 0), sample('file', 2, 34, 24, tree), sample('streamed', 2, 23, 23, 0)],
      fidelity: ['a', 'b', 'c', 'd']
    })
    // 22 / 22 and 22 / 32
    expect(text).toContain("| streamed restore to ready × file mode's inject alone | 1.00 | ≤ 1.1 | met |")
    expect(text).toContain("| streamed restore to ready × file mode's restore to ready | 0.69 | | |")
    expect(text).toContain('| bytes written to storage by main (write_bytes) | 1024 MiB (1.00 × tree) (1024 MiB, 1024 MiB) | 0 MiB (0.00 × tree)')
    expect(text).toContain('after 4 of 4 mains')
  })

  test('a streamed restore well above the inject alone misses the target', () => {
    const text = restoreStreamReport({
      sizeMiB: 1024,
      files: 20000,
      treeBytes: tree,
      samples: [sample('file', 1, 30, 20, tree), sample('streamed', 1, 25, 25, 0)],
      fidelity: []
    })
    expect(text).toContain("| streamed restore to ready × file mode's inject alone | 1.25 | ≤ 1.1 | missed |")
  })
})
