import { afterEach, beforeEach, describe, expect, test } from '@jest/globals'
import * as core from '@actions/core'

import { LOOPBACK } from '../src/builder/route.js'
import type { JobState } from '../src/core/job.js'
import { restoreMounts } from '../src/core/restore.js'
import { saveMounts } from '../src/core/save.js'
import { contextLine, labelled, log, withLabel, withoutLines } from '../src/log.js'
import { PROGRESS_INTERVAL_MS, setProgressClock, startProgress, type ProgressClock } from '../src/progress.js'
import { mountArchive, useWorld, type World } from '../test-support/fakes/harness.js'
import type { CapturingLogger } from '../test-support/fakes/log.js'
import { MemoryStore } from '../test-support/fakes/store.js'

/**
 * What the log says while mounts move in parallel: every line of a mount's
 * restore or save carries its id (ours through the log layer, a library's
 * written straight to stdout, from its own timers too), the library's
 * repeats are left out, and long phases report progress on a clock.
 */
let w: World
let logger: CapturingLogger
useWorld((world, l) => {
  w = world
  logger = l
})

/** stdout as the runner sees it, for one test. */
let written: string[] = []
const realWrite = process.stdout.write
beforeEach(() => {
  written = []
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    written.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'))
    const callback = rest.find(r => typeof r === 'function') as (() => void) | undefined
    callback?.()
    return true
  }) as typeof process.stdout.write
})
afterEach(() => {
  process.stdout.write = realWrite
})
const stdoutLines = (): string[] =>
  written
    .join('')
    .split('\n')
    .filter(l => l !== '')

const npm = { id: 'npm', target: '/root/.npm' }
const apt = { id: 'apt', target: '/var/cache/apt' }

/**
 * A store whose downloads behave like @actions/cache's: a progress timer
 * started inside the download writes `Received … (x%)` lines with
 * core.info (no mount named), and the two downloads overlap.
 */
class ChattyStore extends MemoryStore {
  private started = 0
  private bothStarted!: () => void
  private readonly overlap = new Promise<void>(resolve => (this.bothStarted = resolve))

  override async restore(archivePath: string, primaryKey: string, restoreKeys: string[]): Promise<string | undefined> {
    const key = this.lookup(primaryKey, restoreKeys)
    const total = (this.entries.get(key ?? '')?.length ?? 0) + (primaryKey.includes('-npm-') ? 0 : 100_000)
    let received = 0
    const timer = setInterval(() => {
      received = Math.min(total, received + Math.ceil(total / 4))
      core.info(`Received ${received} of ${total} (${((100 * received) / total).toFixed(1)}%), 1.0 MBs/sec`)
    }, 2)
    setTimeout(() => log.info('reading the entry'), 1)
    if (++this.started === 2) this.bothStarted()
    await this.overlap
    await new Promise(resolve => setTimeout(resolve, 30))
    clearInterval(timer)
    return super.restore(archivePath, primaryKey, restoreKeys)
  }
}

async function twoEntries(store: MemoryStore): Promise<JobState> {
  w.store.entries.clear()
  const { state } = await w.plan([npm, apt])
  store.put(`${state.mounts[0]?.keys.base}-0000000000000000`, await mountArchive({ a: 'npm bytes' }))
  store.put(`${state.mounts[1]?.keys.base}-0000000000000000`, await mountArchive({ b: 'apt bytes' }))
  return state
}

describe('every line of a mount carries its id', () => {
  test('library lines from timers during two concurrent downloads, and our own lines, each name their mount', async () => {
    const store = new ChattyStore()
    const state = await twoEntries(store)
    const { engine } = await w.plan([npm, apt])
    await restoreMounts({ ...w.services, cache: store }, engine, state, LOOPBACK)

    expect(state.mounts.map(m => m.restore.kind)).toEqual(['injected', 'injected'])
    const received = stdoutLines().filter(l => l.includes('Received '))
    // Both downloads printed, interleaved, each line with the mount it is about (apt's entry is 100,000 B larger).
    const npmLines = received.filter(l => l.startsWith('npm: Received '))
    const aptLines = received.filter(l => l.startsWith('apt: Received '))
    expect(npmLines.length).toBeGreaterThan(0)
    expect(aptLines.length).toBeGreaterThan(0)
    expect(npmLines.length + aptLines.length).toBe(received.length)
    const npmTotal = (store.entries.get(`${state.mounts[0]?.keys.base}-0000000000000000`) as Buffer).length
    for (const l of npmLines) expect(l).toMatch(new RegExp(`^npm: Received \\d+ of ${npmTotal} \\(`))
    for (const l of aptLines) expect(l).toMatch(new RegExp(`^apt: Received \\d+ of ${npmTotal + 100_000} \\(`))
    const firstApt = received.findIndex(l => l.startsWith('apt: '))
    const lastNpm = received.map(l => l.startsWith('npm: ')).lastIndexOf(true)
    expect(firstApt).toBeLessThan(lastNpm)

    // Our lines: labelled by the log layer when the message does not name the mount, never twice.
    const info = logger.of('info')
    expect(info.filter(l => l === 'npm: reading the entry' || l === 'apt: reading the entry')).toHaveLength(2)
    expect(info).toContainEqual(expect.stringMatching(/^npm: restored \S+ \(exact, 9 B, 2 entries, /))
    expect(info.filter(l => /^(npm|apt): (npm|apt): /.test(l))).toEqual([])
    // The inject build is no mount's: its line has no label.
    expect(info).toContainEqual(expect.stringMatching(/^Injected 2 mount\(s\)/))
  })

  test('save: each mount’s lines carry its id, the phase lines none', async () => {
    const { state, engine } = await w.plan([npm, apt])
    w.builder.write('npm', 'f', 'npm bytes')
    w.builder.write('apt', 'g', 'apt bytes')
    await saveMounts(w.services, engine, state, LOOPBACK)
    const info = logger.of('info')
    expect(info).toContainEqual(expect.stringMatching(/^npm: saved /))
    expect(info).toContainEqual(expect.stringMatching(/^apt: saved /))
    expect(info).toContainEqual(expect.stringMatching(/^Extracted 2 mount\(s\)/))
  })

  test('the stdout filter: workflow commands keep their syntax, the repeats are dropped, groups untouched', async () => {
    await withLabel('go', async () =>
      withoutLines(/^Cache hit for/, async () => {
        core.info('Cache hit for restore-key: k-1')
        core.info('Cache Size: ~0 MB (120 B)')
        core.warning('Failed to restore: boom')
        core.debug('Resolved Keys:')
        core.startGroup('a group')
        core.endGroup()
      })
    )
    core.info('outside any mount')
    expect(stdoutLines()).toEqual([
      'go: Cache Size: ~0 MB (120 B)',
      '::warning::go: Failed to restore: boom',
      '::debug::go: Resolved Keys:',
      '::group::a group',
      '::endgroup::',
      'outside any mount'
    ])
    expect(labelled('go: already said', 'go')).toBe('go: already said')
    expect(contextLine('Cache hit for: x', { label: 'go', drop: /^Cache hit/ })).toBeUndefined()
    expect(contextLine('::warning::Cache hit for: x', { label: 'go', drop: /^Cache hit/ })).toBe('::warning::go: Cache hit for: x')
  })
})

/** A clock the test moves: `advance` fires every registered ticker once per interval passed. */
class FakeClock implements ProgressClock {
  t = 1_000_000
  readonly tickers = new Set<{ ms: number; tick: () => void; next: number }>()
  now = (): number => this.t
  every(ms: number, tick: () => void): () => void {
    const entry = { ms, tick, next: this.t + ms }
    this.tickers.add(entry)
    return () => this.tickers.delete(entry)
  }
  advance(ms: number): void {
    const end = this.t + ms
    for (;;) {
      const due = [...this.tickers].filter(e => e.next <= end).sort((a, b) => a.next - b.next)[0]
      if (!due) break
      this.t = due.next
      due.next += due.ms
      due.tick()
    }
    this.t = end
  }
}

describe('progress of long phases', () => {
  let clock: FakeClock
  let previous: ProgressClock
  beforeEach(() => {
    clock = new FakeClock()
    previous = setProgressClock(clock)
  })
  afterEach(() => {
    setProgressClock(previous)
  })

  test('the ticker: nothing before one interval or before the first byte, then bytes so far and the rate of the last interval; nothing after stop', () => {
    const lines: string[] = []
    const p = startProgress('extract', l => lines.push(l))
    clock.advance(PROGRESS_INTERVAL_MS)
    expect(lines).toEqual([])
    p.add(1024 * 1024)
    clock.advance(PROGRESS_INTERVAL_MS - 1)
    expect(lines).toEqual([])
    clock.advance(1)
    p.add(4 * 1024 * 1024)
    clock.advance(PROGRESS_INTERVAL_MS)
    p.stop()
    clock.advance(5 * PROGRESS_INTERVAL_MS)
    expect(lines).toEqual(['extract: 1.0 MiB in 20 s, 51.2 KiB/s', 'extract: 5.0 MiB in 30 s, 409.6 KiB/s'])
    expect(clock.tickers.size).toBe(0)
  })

  test('a long inject and extract over the stream: one line per phase each interval, labelled with the phase', async () => {
    const { state, engine } = await w.plan([npm, apt])
    w.store.put(`${state.mounts[0]?.keys.base}-0000000000000000`, await mountArchive({ a: 'x'.repeat(5000) }))
    // The builds take 25 s on the clock: two intervals each.
    w.builder.onBuildEnd = () => clock.advance(25_000)
    await restoreMounts(w.services, engine, state, LOOPBACK)
    w.builder.write('apt', 'g', 'y'.repeat(3000))
    await saveMounts(w.services, engine, state, LOOPBACK)

    const progress = logger.of('info').filter(l => /^(inject|extract): /.test(l))
    expect(progress).toEqual([
      expect.stringMatching(/^inject: \d+\.\d KiB in 10 s, \d+(\.\d)? B\/s$/),
      expect.stringMatching(/^inject: \d+\.\d KiB in 20 s, 0 B\/s$/),
      expect.stringMatching(/^extract: \d+(\.\d)? KiB in 10 s, /),
      expect.stringMatching(/^extract: \d+(\.\d)? KiB in 20 s, /)
    ])
    // The inject stream carries the 5,000 bytes of npm's file and its headers.
    expect(Number(/^inject: (\d+\.\d) KiB/.exec(progress[0] ?? '')?.[1])).toBeGreaterThanOrEqual(5)
    expect(clock.tickers.size).toBe(0)
  })

  test('a phase shorter than one interval prints no progress', async () => {
    const { state, engine } = await w.plan([npm])
    w.store.put(`${state.mounts[0]?.keys.base}-0000000000000000`, await mountArchive({ a: 'x' }))
    w.builder.onBuildEnd = () => clock.advance(PROGRESS_INTERVAL_MS - 1)
    await restoreMounts(w.services, engine, state, LOOPBACK)
    expect(logger.of('info').filter(l => /^(inject|extract): /.test(l))).toEqual([])
    expect(clock.tickers.size).toBe(0)
  })
})
