import { readdirSync } from 'node:fs'

import { describe, expect, test } from '@jest/globals'

import { LOOPBACK } from '../src/builder/route.js'
import { idSegment } from '../src/core/keys.js'
import { restoreMounts } from '../src/core/restore.js'
import { cacheHit, mountOutputs, summaryMarkdown, summaryRows } from '../src/action/report.js'
import { mountArchive, T, useWorld, type World } from '../test-support/fakes/harness.js'
import type { CapturingLogger } from '../test-support/fakes/log.js'
import { makeTar, type RawEntry } from '../test-support/fakes/tar.js'

/**
 * restoreMounts through the seams: entries come from the in-memory store,
 * the inject build is the fake builder's, and every assertion is on what
 * reached the builder's cache, the mounts' statuses, the outputs, the
 * summary rows and the warnings.
 */
let w: World
let logger: CapturingLogger
useWorld((world, log) => {
  w = world
  logger = log
})

const npm = { id: 'npm', target: '/root/.npm' }
const apt = { id: 'apt', target: '/var/cache/apt' }
const files = { 'index.json': '{"a":1}', '_cacache/content/x': 'package bytes' }

describe('a hit', () => {
  test('over the loopback stream: the entry is in the builder with its manifest; outputs and summary say hit', async () => {
    const { state, engine } = await w.plan([npm])
    const key = w.putExact(state, 0, await mountArchive(files))
    await restoreMounts(w.services, engine, state, LOOPBACK)

    expect(w.builder.tree('npm')).toEqual({
      _cacache: 'dir',
      '_cacache/content': 'dir',
      '_cacache/content/x': 'package bytes',
      'index.json': '{"a":1}'
    })
    const m = state.mounts[0]
    expect(m?.restore).toEqual({
      kind: 'injected',
      entry: {
        matchedKey: key,
        digest: expect.stringMatching(/^[0-9a-f]{64}$/),
        bytes: 20,
        // A chain of one: a delta saved on it continues this entry.
        chain: { keys: [key], baseBytes: expect.any(Number), deltaBytes: 0 }
      },
      manifest: w.builder.manifest('npm')
    })
    expect(state.inject).toEqual({ route: 'loopback' })
    expect(mountOutputs(state)).toEqual([{ id: 'npm', key: m?.keys.base, 'matched-key': key, hit: true, 'restored-bytes': 20 }])
    expect(cacheHit(state)).toBe(true)
    const [row] = summaryRows(state, undefined)
    expect(row).toEqual(['npm', 'exact', '20 B', expect.stringMatching(/^\d+\.\d s$/), '', ''])
    const summary = summaryMarkdown(state, undefined)
    expect(summary).toMatch(/^- inject: \d+\.\d s through the loopback stream$/m)
    expect(summary).toContain('- save: not by this step')
    expect(logger.of('info')).toContainEqual(expect.stringMatching(new RegExp(`^npm: restored ${key} \\(exact, 20 B, 5 entries, `)))
    expect(logger.warnings).toEqual([])
    expect(logger.of('info')).toContainEqual(expect.stringMatching(/^Injected 1 mount\(s\), 20 B in .* \(loopback stream\)$/))
    // The archives waited in the root only until the inject build took them.
    expect(readdirSync(w.root)).toEqual([])
  })

  test('over the build context (extract-via export): the same bytes, without networking', async () => {
    const { state, engine } = await w.plan([npm], { extractVia: 'export' })
    w.putExact(state, 0, await mountArchive(files))
    await restoreMounts(w.services, engine, state, LOOPBACK)

    expect(w.builder.tree('npm')['_cacache/content/x']).toBe('package bytes')
    expect(state.mounts[0]?.restore.kind).toBe('injected')
    expect(state.inject).toEqual({ route: 'build-io' })
    expect(w.builder.builds.map(b => [b.kind, b.via, b.network])).toEqual([['inject', 'context', 'none']])
    expect(logger.of('info')).toContainEqual(expect.stringMatching(/\(build context\)$/))
  })

  test('with no reach for a stream, auto injects through the build context at once', async () => {
    const { state, engine } = await w.plan([npm])
    w.putExact(state, 0, await mountArchive(files))
    await restoreMounts(w.services, engine, state, undefined)
    expect(state.mounts[0]?.restore.kind).toBe('injected')
    expect(state.inject).toEqual({ route: 'build-io' })
  })

  test('owners, modes, times, symlinks, hardlinks and large ids arrive as archived (fix-up list applied)', async () => {
    const { state, engine } = await w.plan([npm])
    const old = new Date(1_000_000_000_000)
    const entries: RawEntry[] = [
      { name: './', type: 'directory', mode: 0o750, uid: 1000, gid: 1000, mtime: T },
      { name: 'd/', type: 'directory', mode: 0o700, uid: 5, gid: 6, mtime: old },
      { name: 'd/f', type: 'file', mode: 0o600, uid: 300000, gid: 7, pax: { uid: '300000' }, mtime: T, body: 'f!' },
      { name: 'd/h', type: 'link', linkname: 'd/f', mode: 0o600, mtime: T },
      { name: 'l', type: 'symlink', linkname: 'd/f', mode: 0o777, uid: 9, gid: 9, mtime: old }
    ]
    w.putExact(state, 0, await makeTar(entries))
    await restoreMounts(w.services, engine, state, LOOPBACK)

    expect(w.builder.tree('npm')).toEqual({ d: 'dir', 'd/f': 'f!', 'd/h': '=> d/f', l: '-> d/f' })
    expect(w.builder.entry('npm', '')).toMatchObject({ mode: 0o750, uid: 1000, gid: 1000 })
    expect(w.builder.entry('npm', 'd')).toMatchObject({ mode: 0o700, uid: 5, gid: 6, mtime: old })
    expect(w.builder.entry('npm', 'd/f')).toMatchObject({ uid: 300000, gid: 7, mode: 0o600 })
    expect(w.builder.entry('npm', 'l')).toMatchObject({ uid: 9, gid: 9, mtime: old })
  })

  test('an entry of other key files is a hit but not an exact one (cache-hit false)', async () => {
    const { state, engine } = await w.plan([npm])
    const family = state.mounts[0]?.keys.restoreKeys[1] as string
    const key = `${family}otherhash-0123456789abcdef`
    w.store.put(key, await mountArchive(files))
    await restoreMounts(w.services, engine, state, LOOPBACK)
    expect(mountOutputs(state)[0]).toMatchObject({ 'matched-key': key, hit: true })
    expect(cacheHit(state)).toBe(false)
  })

  test('the newest entry of the key files wins', async () => {
    const { state, engine } = await w.plan([npm])
    w.putExact(state, 0, await mountArchive({ v: 'old' }), '1111111111111111')
    const newest = w.putExact(state, 0, await mountArchive({ v: 'new' }), '2222222222222222')
    await restoreMounts(w.services, engine, state, LOOPBACK)
    expect(w.builder.tree('npm')).toEqual({ v: 'new' })
    expect(mountOutputs(state)[0]?.['matched-key']).toBe(newest)
  })

  test('the cache namespace keys the entries and reaches the inject build', async () => {
    const { state, engine } = await w.plan([npm], { cacheNamespace: 'ns1' })
    expect(state.mounts[0]?.keys.base).toBe(`bmc-${idSegment('ns1/npm')}-linux-amd64-h17`)
    w.putExact(state, 0, await mountArchive(files))
    await restoreMounts(w.services, engine, state, LOOPBACK)
    expect(state.mounts[0]?.restore.kind).toBe('injected')
    expect(w.builder.builds[0]?.buildArgs.BUILDKIT_CACHE_MOUNT_NS).toBe('ns1')
  })
})

describe('nothing to restore', () => {
  test('a miss: the mount starts empty, no build runs, outputs say no hit', async () => {
    const { state, engine } = await w.plan([npm])
    await restoreMounts(w.services, engine, state, LOOPBACK)
    expect(state.mounts[0]?.restore).toEqual({ kind: 'miss' })
    expect(state.inject).toBeUndefined()
    expect(w.builder.builds).toEqual([])
    expect(mountOutputs(state)[0]).toMatchObject({ 'matched-key': '', hit: false, 'restored-bytes': 0 })
    expect(cacheHit(state)).toBe(false)
    expect(summaryRows(state, undefined)[0]?.slice(1, 3)).toEqual(['miss', ''])
    expect(logger.warnings).toEqual([])
    expect(logger.of('info')).toContainEqual(`npm: miss (looked for ${state.mounts[0]?.keys.base})`)
  })

  test('service down: every mount refused with one warning', async () => {
    w.store.faults.unavailable = true
    const { state, engine } = await w.plan([npm, apt])
    w.putExact(state, 0, await mountArchive(files))
    await restoreMounts(w.services, engine, state, LOOPBACK)
    for (const m of state.mounts) expect(m.restore).toEqual({ kind: 'refused', reason: 'cache service not available' })
    expect(w.builder.builds).toEqual([])
    expect(logger.warnings).toEqual(['The cache service is not available: every mount starts empty and nothing will be restored.'])
    expect(summaryRows(state, undefined).map(r => r[1])).toEqual(['miss', 'miss', '0 exact, 0 fallback, 2 miss'])
    expect(summaryMarkdown(state, undefined)).toContain('- `npm`, `apt`: not restored: cache service not available')
    expect(cacheHit(state)).toBe(false)
  })

  test('read not allowed (ACTIONS_CACHE_MODE): refused with a notice, no warning', async () => {
    w.store.faults.unreadable = true
    const { state, engine } = await w.plan([npm])
    w.putExact(state, 0, await mountArchive(files))
    await restoreMounts(w.services, engine, state, LOOPBACK)
    expect(state.mounts[0]?.restore).toEqual({ kind: 'refused', reason: 'cache not readable (ACTIONS_CACHE_MODE)' })
    expect(logger.warnings).toEqual([])
    expect(logger.of('notice')).toHaveLength(1)
    expect(mountOutputs(state)[0]?.hit).toBe(false)
  })
})

describe('an entry that cannot be used', () => {
  test('corrupt bytes (not a tar): failed with the matched key, a warning, nothing injected', async () => {
    const { state, engine } = await w.plan([npm])
    const key = w.putExact(state, 0, Buffer.from('this is not a tar archive at all, just text '.repeat(20)))
    await restoreMounts(w.services, engine, state, LOOPBACK)
    const m = state.mounts[0]
    expect(m?.restore).toMatchObject({ kind: 'failed', matchedKey: key })
    expect(w.builder.builds).toEqual([])
    expect(w.builder.tree('npm')).toEqual({})
    expect(mountOutputs(state)[0]).toMatchObject({ 'matched-key': key, hit: false, 'restored-bytes': 0 })
    expect(summaryMarkdown(state, undefined)).toMatch(/^- `npm`: not restored: failed: /m)
    expect(logger.warnings).toEqual([expect.stringMatching(/^npm: cannot restore the cache entry, the mount starts empty: /)])
  })

  test('a download that arrives corrupt (store fault) is caught the same way', async () => {
    w.store.faults.corruptBytes = Buffer.alloc(2048, 0x41)
    const { state, engine } = await w.plan([npm])
    w.putExact(state, 0, await mountArchive(files))
    await restoreMounts(w.services, engine, state, LOOPBACK)
    expect(state.mounts[0]?.restore.kind).toBe('failed')
  })

  test('an empty file is no archive', async () => {
    const { state, engine } = await w.plan([npm])
    w.putExact(state, 0, Buffer.alloc(0))
    await restoreMounts(w.services, engine, state, LOOPBACK)
    expect(state.mounts[0]?.restore).toMatchObject({ kind: 'failed', reason: expect.stringMatching(/no entries|cannot read/) })
  })

  const hostile: [string, RawEntry[], RegExp][] = [
    ['../ escape', [{ name: '../escape', type: 'file', body: 'x' }], /\.\./],
    ['an absolute path', [{ name: '/etc/cron.d/evil', type: 'file', body: 'x' }], /absolute entry name/],
    [
      'a path through a symlink',
      [
        { name: 'l', type: 'symlink', linkname: '/etc' },
        { name: 'l/passwd', type: 'file', body: 'x' }
      ],
      /goes through symlink/
    ],
    ['a setuid file', [{ name: 'sh', type: 'file', mode: 0o4755, body: 'x' }], /setuid/],
    ['a hardlink to outside', [{ name: 'h', type: 'link', linkname: '../../etc/shadow' }], /\.\./],
    ['a device node', [{ name: 'dev', type: 'character-device' }], /unsupported type/]
  ]
  test.each(hostile)('hostile entry (%s): refused before any build; the other mount is still injected', async (_name, entries, reason) => {
    const { state, engine } = await w.plan([npm, apt])
    const key = w.putExact(state, 0, await makeTar([{ name: './', type: 'directory', mode: 0o755 }, ...entries]))
    w.putExact(state, 1, await mountArchive({ 'pkg.deb': 'deb' }))
    await restoreMounts(w.services, engine, state, LOOPBACK)

    expect(state.mounts[0]?.restore).toMatchObject({ kind: 'failed', matchedKey: key, reason: expect.stringMatching(reason) })
    expect(state.mounts[1]?.restore.kind).toBe('injected')
    expect(w.builder.tree('npm')).toEqual({})
    expect(w.builder.tree('apt')).toEqual({ 'pkg.deb': 'deb' })
    expect(mountOutputs(state).map(o => o.hit)).toEqual([false, true])
    expect(cacheHit(state)).toBe(false)
    expect(logger.warnings).toEqual([expect.stringMatching(/^npm: cannot restore the cache entry/)])
  })

  test('an entry expanding past max-restore-size is refused', async () => {
    const { state, engine } = await w.plan([npm], { maxRestoreBytes: 4096 })
    w.putExact(state, 0, await mountArchive({ big: 'x'.repeat(8192) }))
    await restoreMounts(w.services, engine, state, LOOPBACK)
    expect(state.mounts[0]?.restore).toMatchObject({ kind: 'failed', reason: expect.stringMatching(/4096-byte limit/) })
    expect(w.builder.tree('npm')).toEqual({})
  })

  test('a download that fails: failed without a matched key', async () => {
    w.store.faults.throwOnRestore = true
    const { state, engine } = await w.plan([npm])
    w.putExact(state, 0, await mountArchive(files))
    await restoreMounts(w.services, engine, state, LOOPBACK)
    expect(state.mounts[0]?.restore).toEqual({ kind: 'failed', reason: expect.stringMatching(/download of .* failed/) })
    expect(mountOutputs(state)[0]?.['matched-key']).toBe('')
  })
})

describe('the inject build', () => {
  test('fails on every route: restored mounts end failed (matched key kept), one warning, the builder cache stays empty', async () => {
    w.builder.faults.failBuilds = 'inject'
    const { state, engine } = await w.plan([npm, apt])
    const key = w.putExact(state, 0, await mountArchive(files))
    await restoreMounts(w.services, engine, state, LOOPBACK)

    expect(state.mounts[0]?.restore).toEqual({
      kind: 'failed',
      matchedKey: key,
      reason: expect.stringMatching(/^inject failed: docker buildx build failed \(exit 1\)/)
    })
    expect(state.mounts[1]?.restore).toEqual({ kind: 'miss' })
    expect(state.inject).toBeUndefined()
    expect(w.builder.tree('npm')).toEqual({})
    expect(mountOutputs(state).map(o => [o.hit, o['matched-key']])).toEqual([
      [false, key],
      [false, '']
    ])
    expect(logger.warnings).toEqual([
      expect.stringMatching(/^Could not inject the restored caches into the builder; the build runs with empty cache mounts: /)
    ])
    // Tried the stream, then the build context, which was the last route.
    expect(w.builder.builds.map(b => b.via)).toEqual(['stream', 'context'])
  })

  test('loopback refused (no network.host entitlement): falls back to the build context, with the reason recorded', async () => {
    w.builder.faults.refuseHostNetwork = true
    const { state, engine } = await w.plan([npm])
    w.putExact(state, 0, await mountArchive(files))
    await restoreMounts(w.services, engine, state, LOOPBACK)

    expect(w.builder.tree('npm')['index.json']).toBe('{"a":1}')
    expect(state.mounts[0]?.restore).toMatchObject({ kind: 'injected', manifest: w.builder.manifest('npm') })
    expect(state.inject).toEqual({ route: 'build-io', fallback: expect.stringContaining('network.host is not allowed') })
    expect(logger.of('info')).toContainEqual(
      expect.stringMatching(/^Loopback stream not available \(.*network\.host is not allowed\); injecting through the build context instead\.$/)
    )
    expect(logger.warnings).toEqual([])
    expect(summaryMarkdown(state, undefined)).toMatch(/^- inject: \d+\.\d s through the build context, after the stream failed \(.+\)$/m)
    expect(w.builder.builds.map(b => [b.via, b.network, b.ok])).toEqual([
      ['stream', 'host', false],
      ['context', 'none', true]
    ])
  })

  test('extract-via loopback has no fallback: a refused stream leaves the mount failed', async () => {
    w.builder.faults.refuseHostNetwork = true
    const { state, engine } = await w.plan([npm], { extractVia: 'loopback' })
    w.putExact(state, 0, await mountArchive(files))
    await restoreMounts(w.services, engine, state, undefined)
    expect(state.mounts[0]?.restore).toMatchObject({ kind: 'failed', reason: expect.stringContaining('network.host is not allowed') })
    expect(w.builder.builds).toHaveLength(1)
  })

  test('a result without manifests: injected, without a manifest', async () => {
    w.builder.faults.noManifests = true
    const { state, engine } = await w.plan([npm])
    w.putExact(state, 0, await mountArchive(files))
    await restoreMounts(w.services, engine, state, LOOPBACK)
    expect(state.mounts[0]?.restore).toEqual({ kind: 'injected', entry: expect.anything() })
  })

  test('several mounts in one build: each gets its own bytes and manifest; a miss stays empty', async () => {
    const { state, engine } = await w.plan([npm, apt, { id: 'go', target: '/go/pkg', uid: 1000, gid: 1000, mode: 0o700 }])
    w.putExact(state, 0, await mountArchive({ a: 'npm' }))
    w.putExact(state, 2, await mountArchive({ b: 'go' }))
    await restoreMounts(w.services, engine, state, LOOPBACK)
    expect([w.builder.tree('npm'), w.builder.tree('apt'), w.builder.tree('go')]).toEqual([{ a: 'npm' }, {}, { b: 'go' }])
    expect(state.mounts.map(m => m.restore.kind)).toEqual(['injected', 'miss', 'injected'])
    expect(state.mounts[0]?.restore).toMatchObject({ manifest: w.builder.manifest('npm') })
    expect(state.mounts[2]?.restore).toMatchObject({ manifest: w.builder.manifest('go') })
    expect(logger.of('info')).toContainEqual(expect.stringMatching(/^Restore to ready: .* for 2 mount\(s\)/))
  })
})
