import { readdirSync } from 'node:fs'

import { describe, expect, test } from '@jest/globals'

import { LOOPBACK, type StreamReach } from '../src/builder/route.js'
import type { Engine } from '../src/builder/engine.js'
import type { JobState } from '../src/core/job.js'
import type { PlanInputs } from '../src/core/plan.js'
import { restoreMounts } from '../src/core/restore.js'
import { saveMounts, type SaveReport } from '../src/core/save.js'
import type { MountSpec } from '../src/mounts/spec.js'
import { storeOutcome, summaryMarkdown, summaryRows } from '../src/action/report.js'
import { useWorld, type World } from '../test-support/fakes/harness.js'
import type { CapturingLogger } from '../test-support/fakes/log.js'
import { readTar } from '../test-support/fakes/tar.js'

/**
 * saveMounts through the seams: the extract build is the fake builder's,
 * the entries land in the in-memory store. Each test runs main's restore
 * first (as the action does), lets a "user build" write into the builder's
 * cache, then post's save, and asserts on the stored bytes and statuses.
 */
let w: World
let logger: CapturingLogger
useWorld((world, log) => {
  w = world
  logger = log
})

const npm: MountSpec = { id: 'npm', target: '/root/.npm' }
const apt: MountSpec = { id: 'apt', target: '/var/cache/apt' }

async function main(
  mounts: MountSpec[],
  inputs: Partial<PlanInputs> = {},
  reach: StreamReach | undefined = LOOPBACK
): Promise<{ state: JobState; engine: Engine }> {
  const planned = await w.plan(mounts, inputs)
  await restoreMounts(w.services, planned.engine, planned.state, reach)
  return planned
}

async function post(planned: { state: JobState; engine: Engine }, reach: StreamReach | undefined = LOOPBACK): Promise<SaveReport> {
  return saveMounts(w.services, planned.engine, planned.state, reach)
}

/** The stored entry's files: path → content ('dir' for directories). */
async function stored(key: string): Promise<Record<string, string>> {
  const bytes = w.store.entries.get(key)
  if (!bytes) throw new Error(`no entry ${key}`)
  const out: Record<string, string> = {}
  for (const e of await readTar(bytes)) out[e.header.name] = e.header.type === 'directory' ? 'dir' : e.body.toString()
  return out
}

describe('a changed mount is saved', () => {
  test('after a miss: the stored entry holds exactly what the build wrote, under the content-digest key', async () => {
    const job = await main([npm])
    w.builder.write('npm', 'index.json', '{"v":1}')
    w.builder.write('npm', '_cacache/x', 'pkg')
    const report = await post(job)

    const save = report.saves.get(0)
    expect(save).toEqual({
      kind: 'saved',
      key: expect.stringMatching(new RegExp(`^${job.state.mounts[0]?.keys.base}-[0-9a-f]{16}$`)),
      bytes: 10,
      ms: expect.any(Number)
    })
    const key = (save as { key: string }).key
    expect([...w.store.entries.keys()]).toEqual([key])
    expect(await stored(key)).toEqual({ './': 'dir', '_cacache/': 'dir', '_cacache/x': 'pkg', 'index.json': '{"v":1}' })
    expect(storeOutcome(save)).toEqual({ outcome: 'saved', key })
    expect(report.extract).toEqual({ route: 'loopback' })
    const [row] = summaryRows(job.state, report)
    expect(row?.slice(0, 5)).toEqual(['npm', 'miss', '', expect.stringMatching(/^\d+\.\d s$/), '10 B'])
    expect(row?.[5]).toMatch(/^\d+\.\d s$/)
    const summary = summaryMarkdown(job.state, report)
    expect(summary).toMatch(/^- extract: \d+\.\d s through the loopback stream$/m)
    expect(summary).toContain(`| npm | \`${job.state.mounts[0]?.keys.base}\` |  | \`${key}\` |`)
    expect(logger.warnings).toEqual([])
    expect(readdirSync(w.root)).toEqual([])
  })

  test('the next run restores it; unchanged there, nothing is uploaded (manifest); touched, nothing either (digest)', async () => {
    const first = await main([npm])
    w.builder.write('npm', 'a/b', 'content')
    const key = ((await post(first)).saves.get(0) as { key: string }).key

    // Run 2: a fresh builder; the build does not touch the cache.
    w.nextRun()
    const second = await main([npm])
    expect(w.builder.tree('npm')).toEqual({ a: 'dir', 'a/b': 'content' })
    expect(second.state.mounts[0]?.restore).toMatchObject({ kind: 'injected', entry: { matchedKey: key } })
    const report2 = await post(second)
    expect(report2.saves.get(0)).toEqual({ kind: 'unchanged', bytes: 7, how: 'manifest' })
    expect(storeOutcome(report2.saves.get(0))).toEqual({ outcome: 'nothing-to-save' })
    expect(summaryRows(second.state, report2)[0]?.[4]).toBe('unchanged')
    expect(summaryMarkdown(second.state, report2)).toContain('- `npm`: not saved: unchanged since restore (the builder left it as inject did)')
    expect(w.builder.builds.at(-1)?.buildArgs.BMC_MANIFEST_0).toBe(w.builder.manifest('npm'))
    expect(logger.of('info')).toContainEqual(expect.stringMatching(/1 unchanged since inject, not read\)$/))

    // Run 3: the build rewrites the files with the same content (ctime moves, the manifest differs).
    w.nextRun()
    const third = await main([npm])
    w.builder.touch('npm')
    const report3 = await post(third)
    expect(report3.saves.get(0)).toEqual({ kind: 'unchanged', bytes: 7, how: 'digest' })
    expect([...w.store.entries.keys()]).toEqual([key])
  })

  test('changed after a restore: saved under a new key, and that entry is the one the next run gets', async () => {
    const first = await main([npm])
    w.builder.write('npm', 'f', 'one')
    await post(first)
    w.nextRun()
    const second = await main([npm])
    w.builder.write('npm', 'g', 'two')
    const report = await post(second)
    const key = (report.saves.get(0) as { key: string }).key
    expect(w.store.entries.size).toBe(2)
    expect(await stored(key)).toEqual({ './': 'dir', f: 'one', g: 'two' })
    w.nextRun()
    const third = await main([npm])
    expect(third.state.mounts[0]?.restore).toMatchObject({ entry: { matchedKey: key } })
    expect(w.builder.tree('npm')).toEqual({ f: 'one', g: 'two' })
  })

  test('owners, modes, times, symlinks, hardlinks and large ids survive save, restore and extract (digest equal)', async () => {
    const first = await main([npm])
    const old = new Date(1_000_000_000_000)
    w.builder.put('npm', 'd', { type: 'directory', mode: 0o700, uid: 5, gid: 6, mtime: old })
    w.builder.write('npm', 'd/f', 'data', { mode: 0o640, uid: 400000, gid: 12, mtime: old })
    w.builder.put('npm', 'd/h', { type: 'link', linkname: 'd/f', mode: 0o640, uid: 400000, gid: 12, mtime: old })
    w.builder.put('npm', 'l', { type: 'symlink', linkname: 'd/f', mode: 0o777, uid: 3, gid: 4, mtime: old })
    const saved = (await post(first)).saves.get(0)
    expect(saved?.kind).toBe('saved')

    w.nextRun()
    const second = await main([npm])
    expect(w.builder.entry('npm', 'd/f')).toMatchObject({ uid: 400000, gid: 12, mode: 0o640, mtime: old })
    expect(w.builder.entry('npm', 'l')).toMatchObject({ uid: 3, gid: 4, linkname: 'd/f', mtime: old })
    w.builder.touch('npm')
    expect((await post(second)).saves.get(0)).toMatchObject({ kind: 'unchanged', how: 'digest' })
  })

  test('exclude patterns leave paths out of the stored entry', async () => {
    const job = await main([{ ...npm, exclude: ['tmp', '**/*.log'] }])
    w.builder.write('npm', 'keep', 'k')
    w.builder.write('npm', 'tmp/junk', 'j')
    w.builder.write('npm', 'sub/x.log', 'l')
    const key = ((await post(job)).saves.get(0) as { key: string }).key
    expect(await stored(key)).toEqual({ './': 'dir', keep: 'k', 'sub/': 'dir' })
  })

  test('the same content stored already (a parallel job): unchanged, exists; nothing uploaded', async () => {
    const first = await main([npm])
    w.builder.write('npm', 'f', 'same')
    const key = ((await post(first)).saves.get(0) as { key: string }).key
    // Another job, planned but not restored (as save/ without a state), builds the same content.
    w.nextRun()
    const other = await w.plan([npm])
    w.builder.write('npm', 'f', 'same')
    const report = await post(other)
    expect(report.saves.get(0)).toEqual({ kind: 'unchanged', bytes: 4, how: 'exists', key })
    expect(storeOutcome(report.saves.get(0))).toEqual({ outcome: 'exists', key })
    expect(w.store.entries.size).toBe(1)
  })
})

describe('not saved on purpose', () => {
  test('an empty mount: skipped empty', async () => {
    const job = await main([npm])
    const report = await post(job)
    expect(report.saves.get(0)).toEqual({ kind: 'skipped', reason: 'empty' })
    expect(summaryRows(job.state, report)[0]?.[4]).toBe('empty')
    expect(summaryMarkdown(job.state, report)).toContain('- `npm`: not saved: the mount is empty')
    expect(w.store.entries.size).toBe(0)
    expect(logger.warnings).toEqual([])
  })

  test('over max-size (per mount and step-wide): skipped with a warning, not uploaded', async () => {
    const job = await main([{ ...npm, maxSize: 10 }, apt], { maxSize: 20 })
    w.builder.write('npm', 'big', 'x'.repeat(11))
    w.builder.write('apt', 'big', 'x'.repeat(21))
    const report = await post(job)
    expect(report.saves.get(0)).toEqual({ kind: 'skipped', reason: 'over max-size', bytes: 11 })
    expect(report.saves.get(1)).toEqual({ kind: 'skipped', reason: 'over max-size', bytes: 21 })
    expect(summaryRows(job.state, report).map(r => r[4])).toEqual(['over max-size', 'over max-size', '0 B in 0'])
    expect(summaryMarkdown(job.state, report)).toContain('- `npm`: not saved: over max-size (11 B)\n- `apt`: not saved: over max-size (21 B)')
    expect(w.store.entries.size).toBe(0)
    expect(logger.warnings).toEqual([
      expect.stringMatching(/^npm: 11 B is over max-size 10 B/),
      expect.stringMatching(/^apt: 21 B is over max-size 20 B/)
    ])
  })

  test('a mount under max-size is saved', async () => {
    const job = await main([npm], { maxSize: 1024 })
    w.builder.write('npm', 'f', 'small')
    expect((await post(job)).saves.get(0)?.kind).toBe('saved')
  })

  test('service down: every mount skipped, one warning, no extract build', async () => {
    const job = await main([npm, apt])
    w.builder.write('npm', 'f', 'x')
    w.store.faults.unavailable = true
    const report = await post(job)
    expect([...report.saves.values()]).toEqual([
      { kind: 'skipped', reason: 'cache unavailable' },
      { kind: 'skipped', reason: 'cache unavailable' }
    ])
    expect(w.builder.builds.filter(b => b.kind === 'extract')).toEqual([])
    expect(logger.warnings).toEqual(['The cache service is not available: cache mounts are not saved.'])
    expect(summaryRows(job.state, report)[0]?.[4]).toBe('no cache service')
    expect(summaryMarkdown(job.state, report)).toContain('- `npm`, `apt`: not saved: the cache service is not available')
  })

  test('read-only cache: skipped with a notice, no extract build', async () => {
    const job = await main([npm])
    w.builder.write('npm', 'f', 'x')
    w.store.faults.readOnly = true
    const report = await post(job)
    expect(report.saves.get(0)).toEqual({ kind: 'skipped', reason: 'cache read-only' })
    expect(logger.of('notice')).toEqual([expect.stringContaining('may not write to the cache')])
    expect(logger.warnings).toEqual([])
    expect(w.builder.builds.filter(b => b.kind === 'extract')).toEqual([])
  })

  test('no mounts: an empty report', async () => {
    const job = await main([])
    const report = await post(job)
    expect(report.saves.size).toBe(0)
    expect(w.builder.builds).toEqual([])
  })
})

describe('saving goes wrong', () => {
  test('the extract build fails: every mount failed, one warning, nothing stored', async () => {
    const job = await main([npm, apt])
    w.builder.write('npm', 'f', 'x')
    w.builder.faults.failBuilds = 'extract'
    const report = await post(job)
    for (const i of [0, 1])
      expect(report.saves.get(i)).toEqual({ kind: 'failed', reason: expect.stringMatching(/^extract failed: docker buildx build failed \(exit 1\)/) })
    expect(storeOutcome(report.saves.get(0))).toEqual({ outcome: 'nothing-to-save' })
    expect(w.store.entries.size).toBe(0)
    expect(logger.warnings).toEqual([expect.stringMatching(/^Could not extract the cache mounts from the builder; nothing is saved: /)])
    expect(summaryRows(job.state, report)[0]?.[4]).toBe('failed')
    expect(summaryMarkdown(job.state, report)).toMatch(/^- `npm`, `apt`: not saved: failed: extract failed: /m)
    expect(summaryMarkdown(job.state, report)).toMatch(/^- extract: failed after \d+\.\d s$/m)
    // Stream first, then the exporter: both builds failed.
    expect(w.builder.builds.filter(b => b.kind === 'extract').map(b => b.via)).toEqual(['stream', 'export'])
  })

  test('the upload throws: failed with the key, a warning', async () => {
    const job = await main([npm])
    w.builder.write('npm', 'f', 'x')
    w.store.faults.throwOnSave = true
    const save = (await post(job)).saves.get(0)
    const base = `${job.state.mounts[0]?.keys.base}-`
    expect(save).toEqual({
      kind: 'failed',
      reason: expect.stringMatching(/upload of .* failed: 500/),
      key: expect.stringMatching(new RegExp(`^${base}[0-9a-f]{16}$`))
    })
    expect(storeOutcome(save)).toEqual({ outcome: 'failed', key: (save as { key: string }).key })
    expect(summaryMarkdown(job.state, { saves: new Map([[0, save!]]) })).toMatch(/^- `npm`: not saved: failed: upload of /m)
    expect(logger.warnings).toEqual([expect.stringMatching(/^npm: cannot save the cache entry: upload of /)])
    expect(w.store.entries.size).toBe(0)
  })

  test('the lookup before the upload throws: failed, without a key (nothing was tried under it)', async () => {
    const job = await main([npm])
    w.builder.write('npm', 'f', 'x')
    w.store.faults.throwOnExists = true
    const save = (await post(job)).saves.get(0)
    expect(save).toEqual({ kind: 'failed', reason: expect.stringMatching(/lookup failed/) })
    expect(storeOutcome(save)).toEqual({ outcome: 'nothing-to-save' })
    expect(logger.warnings).toEqual([expect.stringMatching(/^npm: cannot save the cache entry: lookup failed/)])
  })

  test('save returns false: skipped not stored, with the key', async () => {
    const job = await main([npm])
    w.builder.write('npm', 'f', 'x')
    w.store.faults.saveReturnsFalse = true
    const save = (await post(job)).saves.get(0)
    expect(save).toEqual({ kind: 'skipped', reason: 'not stored', key: expect.stringMatching(/^bmc-npm-/) })
    expect(storeOutcome(save)).toEqual({ outcome: 'not-saved', key: (save as { key: string }).key })
    expect(summaryRows(job.state, { saves: new Map([[0, save!]]) })[0]?.[4]).toBe('not stored')
    expect(w.store.entries.size).toBe(0)
    expect(logger.warnings).toEqual([])
  })

  test('an unsafe entry in the builder (a hardlink to nothing) fails on this side: final, no second route tried', async () => {
    const job = await main([npm])
    w.builder.put('npm', 'h', { type: 'link', linkname: 'missing' })
    const report = await post(job)
    expect(report.saves.get(0)).toEqual({ kind: 'failed', reason: expect.stringMatching(/^extract failed: hardlink "h" points to "missing"/) })
    expect(w.builder.builds.filter(b => b.kind === 'extract').map(b => b.via)).toEqual(['stream'])
    expect(w.store.entries.size).toBe(0)
  })
})

describe('routes across the two phases', () => {
  test('loopback refused at inject: post goes straight to the exporter, no second stream attempt', async () => {
    const first = await main([npm])
    w.builder.write('npm', 'f', 'x')
    await post(first)
    w.nextRun({ refuseHostNetwork: true })
    const job = await main([npm])
    w.builder.write('npm', 'g', 'y')
    const report = await post(job)

    expect(job.state.inject?.fallback).toContain('network.host is not allowed')
    expect(report.extract).toEqual({ route: 'build-io' })
    expect(report.saves.get(0)?.kind).toBe('saved')
    const extracts = w.builder.builds.filter(b => b.kind === 'extract')
    expect(extracts).toHaveLength(1)
    expect(extracts[0]?.via).toBe('export')
    expect(extracts[0]?.argv).toContain('--network=none')
    expect(extracts[0]?.argv).not.toContain('network.host')
    expect(extracts[0]?.argv.some(a => a.startsWith('BMC_PORT='))).toBe(false)
    const summary = summaryMarkdown(job.state, report)
    expect(summary).toMatch(/^- inject: \d+\.\d s through the build context, after the stream failed \(.+\)$/m)
    expect(summary).toMatch(/^- extract: \d+\.\d s through the build exporter$/m)
  })

  test('loopback refused only at extract: falls back to the exporter with the reason recorded', async () => {
    const job = await main([npm])
    w.builder.write('npm', 'f', 'x')
    w.builder.faults.refuseHostNetwork = true
    const report = await post(job)
    expect(report.extract).toEqual({ route: 'build-io', fallback: expect.stringContaining('network.host is not allowed') })
    const key = (report.saves.get(0) as { key: string }).key
    expect(await stored(key)).toEqual({ './': 'dir', f: 'x' })
    expect(logger.of('info')).toContainEqual(
      expect.stringMatching(/^Loopback stream not available .*; extracting through the build's exporter instead\.$/)
    )
  })

  test('extract-via export: the exporter only; unchanged mounts are skipped in the builder there too', async () => {
    const first = await main([npm, apt], { extractVia: 'export' })
    w.builder.write('npm', 'f', 'x')
    w.builder.write('apt', 'g', 'y')
    await post(first)
    w.nextRun()
    const second = await main([npm, apt], { extractVia: 'export' })
    w.builder.write('apt', 'g2', 'z')
    const report = await post(second)
    expect(report.saves.get(0)).toMatchObject({ kind: 'unchanged', how: 'manifest' })
    expect(report.saves.get(1)).toMatchObject({ kind: 'saved' })
    expect(w.builder.builds.map(b => b.via)).toEqual(['context', 'export'])
  })

  test('a restored entry whose inject failed is not taken as unchanged: the extracted content is saved', async () => {
    const first = await main([npm])
    w.builder.write('npm', 'f', 'x')
    await post(first)
    w.nextRun({ failBuilds: 'inject' })
    const second = await main([npm])
    expect(second.state.mounts[0]?.restore.kind).toBe('failed')
    w.builder.faults = {}
    w.builder.write('npm', 'other', 'new')
    const report = await post(second)
    expect(report.saves.get(0)?.kind).toBe('saved')
  })
})
