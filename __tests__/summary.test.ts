import { afterAll, afterEach, beforeEach, describe, expect, test } from '@jest/globals'

import { withDefaults, type InputReader } from '../src/action/inputs.js'
import { runMain } from '../src/action/main.js'
import { runPost } from '../src/action/post.js'
import { hitCounts, notSavedCounts, summaryMarkdown } from '../src/action/report.js'
import type { JobState } from '../src/core/job.js'
import type { SaveReport } from '../src/core/save.js'
import { ActionsEnv } from '../test-support/fakes/actions-env.js'
import { useWorld, type World } from '../test-support/fakes/harness.js'

/**
 * The job summary: the exact markdown for a known set of statuses, and a
 * summary written by a step that fails.
 */
let w: World
const env = new ActionsEnv()
afterAll(() => env.dispose())
useWorld(world => {
  w = world
})
beforeEach(() => {
  env.install({ 'STATE_mount-cache-state': undefined })
})
afterEach(() => env.reset())

const npm = { id: 'npm', target: '/root/.npm' }
const apt = { id: 'apt', target: '/var/cache/apt' }
const go = { id: 'go', target: '/root/.cache/go-build' }
const pip = { id: 'pip', target: '/root/.cache/pip' }

/** Four mounts with every kind of outcome, times and sizes fixed. */
async function known(): Promise<{ state: JobState; report: SaveReport }> {
  const { state } = await w.plan([npm, apt, go, pip])
  const [m0, m1, m2, m3] = state.mounts
  if (!m0 || !m1 || !m2 || !m3) throw new Error('four mounts planned')
  m0.restore = { kind: 'injected', entry: { matchedKey: 'bmc-npm-linux-amd64-h17-aaaaaaaaaaaaaaaa', digest: 'd0', bytes: 3 * 1024 * 1024 } }
  m0.restoreMs = 1250
  m1.restore = { kind: 'injected', entry: { matchedKey: 'bmc-apt-linux-amd64-h0-bbbbbbbbbbbbbbbb', digest: 'd1', bytes: 2048 }, manifest: 'm' }
  m1.restoreMs = 400
  m2.restore = { kind: 'miss' }
  m2.restoreMs = 30
  m3.restore = { kind: 'failed', reason: 'download of x failed:\nconnection reset | retry', matchedKey: 'bmc-pip-linux-amd64-h17-cccccccccccccccc' }
  m3.restoreMs = 2000
  state.inject = { route: 'loopback' }
  state.injectMs = 4321
  const report: SaveReport = {
    saves: new Map([
      [0, { kind: 'saved', key: 'bmc-npm-linux-amd64-h17-dddddddddddddddd', bytes: 4 * 1024 * 1024, ms: 2500 }],
      [1, { kind: 'unchanged', bytes: 2048, how: 'manifest' }],
      [2, { kind: 'skipped', reason: 'empty' }],
      [3, { kind: 'skipped', reason: 'over max-size', bytes: 3 * 1024 ** 3 }]
    ]),
    extract: { route: 'build-io', fallback: 'connection refused' },
    extractMs: 6000
  }
  return { state, report }
}

describe('the summary markdown', () => {
  test('one row per mount, totals, routes, reasons, folded keys', async () => {
    const { state, report } = await known()
    expect(summaryMarkdown(state, report)).toBe(
      [
        '### BuildKit cache mounts',
        '',
        '| mount | hit | restored | restore | saved | save |',
        '| --- | --- | --- | --- | --- | --- |',
        '| npm | exact | 3.0 MiB | 1.3 s | 4.0 MiB | 2.5 s |',
        '| apt | fallback | 2.0 KiB | 0.4 s | unchanged |  |',
        '| go | miss |  | 0.0 s | empty |  |',
        '| pip | miss |  | 2.0 s | over max-size |  |',
        '| total (4) | 1 exact, 1 fallback, 2 miss | 3.0 MiB |  | 4.0 MiB in 1 |  |',
        '',
        '- inject: 4.3 s through the loopback stream',
        '- extract: 6.0 s through the build exporter, after the stream failed (connection refused)',
        '- `apt`: not saved: unchanged since restore (the builder left it as inject did)',
        '- `go`: not saved: the mount is empty',
        '- `pip`: not restored: failed: download of x failed:',
        '- `pip`: not saved: over max-size (3.0 GiB)',
        '',
        '<details><summary>Keys</summary>',
        '',
        '| mount | key | restored from | saved as |',
        '| --- | --- | --- | --- |',
        '| npm | `bmc-npm-linux-amd64-h17` | `bmc-npm-linux-amd64-h17-aaaaaaaaaaaaaaaa` | `bmc-npm-linux-amd64-h17-dddddddddddddddd` |',
        '| apt | `bmc-apt-linux-amd64-h17` | `bmc-apt-linux-amd64-h0-bbbbbbbbbbbbbbbb` |  |',
        '| go | `bmc-go-linux-amd64-h17` |  |  |',
        '| pip | `bmc-pip-linux-amd64-h17` | `bmc-pip-linux-amd64-h17-cccccccccccccccc` |  |',
        '',
        '</details>',
        ''
      ].join('\n')
    )
  })

  test('a chain restored and a delta saved: the restored and saved columns say so', async () => {
    const { state, report } = await known()
    const m0 = state.mounts[0]
    if (m0?.restore.kind !== 'injected') throw new Error('npm is injected')
    const base = 'bmc-npm-linux-amd64-h17-aaaaaaaaaaaaaaaa'
    const tip = `${base}-d2-0123456789ab`
    m0.restore.entry = { ...m0.restore.entry, matchedKey: tip, chain: { keys: [base, `${base}-d1-ba9876543210`, tip], baseBytes: 1, deltaBytes: 1 } }
    report.saves.set(0, { kind: 'saved', key: `${base}-d3-aaaabbbbcccc`, bytes: 5000, ms: 300, delta: { sequence: 3, removed: 2 } })
    const text = summaryMarkdown(state, report)
    expect(text).toContain('| npm | exact | 3.0 MiB (base + 2 deltas) | 1.3 s | 4.9 KiB (delta 3) | 0.3 s |')
    expect(text).toContain(`| npm | \`bmc-npm-linux-amd64-h17\` | \`${tip}\` | \`${base}-d3-aaaabbbbcccc\` |`)
  })

  test('main only (no save by this step): four columns, and the failure in one line on top', async () => {
    const { state } = await known()
    const text = summaryMarkdown(state, undefined, 'main step: the builder went away\nstack trace')
    expect(text.split('\n').slice(0, 11)).toEqual([
      '### BuildKit cache mounts',
      '',
      '**Failed:** main step: the builder went away',
      '',
      '| mount | hit | restored | restore |',
      '| --- | --- | --- | --- |',
      '| npm | exact | 3.0 MiB | 1.3 s |',
      '| apt | fallback | 2.0 KiB | 0.4 s |',
      '| go | miss |  | 0.0 s |',
      '| pip | miss |  | 2.0 s |',
      '| total (4) | 1 exact, 1 fallback, 2 miss | 3.0 MiB |  |'
    ])
    expect(text).toContain('\n- save: not by this step\n- `pip`: not restored: failed: download of x failed:\n')
  })

  test('a reason never breaks the summary: one line in the notes, the table intact', async () => {
    const { state, report } = await known()
    report.saves.set(2, { kind: 'failed', reason: 'upload | 503\nretry later' })
    const text = summaryMarkdown(state, report)
    expect(text).toContain('\n- `go`: not saved: failed: upload | 503\n')
    expect(text).toContain('\n| go | miss |  | 0.0 s | failed |  |\n')
  })

  test('the CLI’s result lines count the same words', async () => {
    const { state, report } = await known()
    expect(hitCounts(state)).toBe('1 exact, 1 fallback, 2 miss')
    expect(notSavedCounts(state, report)).toBe('1 unchanged, 1 empty, 1 over max-size')
  })
})

function reader(inputs: Record<string, string> = {}): InputReader {
  const given: Record<string, string> = { mounts: 'id=npm,target=/root/.npm', platform: 'linux/amd64', ...inputs }
  return withDefaults(name => given[name] ?? '')
}

describe('a step that fails still writes a summary', () => {
  test('main failing before it planned: the failure alone', async () => {
    const services = { ...w.services, hashFiles: async (): Promise<string> => Promise.reject(new Error('cannot hash key files: EACCES')) }
    await expect(runMain(false, reader({ 'key-files': 'package-lock.json' }), services)).rejects.toThrow('EACCES')
    expect(env.summary()).toBe('### BuildKit cache mounts\n\n**Failed:** main step: cannot hash key files: EACCES\n\n')
  })

  test('post failing: what main knew, and the failure', async () => {
    await runMain(false, reader(), w.services)
    env.handStateToPost()
    const cache = Object.assign(Object.create(Object.getPrototypeOf(w.store) as object) as typeof w.store, w.store, {
      available: (): boolean => {
        throw new Error('the cache client crashed')
      }
    })
    await expect(runPost(reader(), { ...w.services, cache })).rejects.toThrow('the cache client crashed')
    const summary = env.summary()
    expect(summary).toContain('**Failed:** post step: the cache client crashed\n')
    expect(summary).toContain('\n| npm | miss |  |')
  })
})
