import { describe, expect, test } from '@jest/globals'

import { LOOPBACK } from '../src/builder/route.js'
import { restoreMounts } from '../src/core/restore.js'
import { mountOutputs } from '../src/action/report.js'
import { mountArchive, useWorld, type World } from '../test-support/fakes/harness.js'
import type { CapturingLogger } from '../test-support/fakes/log.js'
import { makeTar } from '../test-support/fakes/tar.js'

/**
 * restoreMounts with a store that streams (as the GitHub stream client
 * does): over a stream route each entry goes from its download into the
 * inject build, checked on its way; the fake builder empties a mount the
 * stream began and did not complete, as the generated RUN does.
 */
let w: World
let logger: CapturingLogger
useWorld((world, log) => {
  w = world
  logger = log
})

const npm = { id: 'npm', target: '/root/.npm' }
const apt = { id: 'apt', target: '/var/cache/apt' }

describe('a store that streams, over a stream route', () => {
  test('every entry goes from its download into the build: nothing downloaded to a file, the same tree and digest', async () => {
    w.store.streaming()
    const { state, engine } = await w.plan([npm, apt])
    w.putExact(state, 0, await mountArchive({ 'index.json': '{"a":1}', 'pkgs/x': 'package bytes' }))
    w.putExact(state, 1, await mountArchive({ 'pkg.deb': 'deb' }))
    await restoreMounts(w.services, engine, state, LOOPBACK)

    expect(w.store.calls).toEqual({ open: 2, restore: 0 })
    expect(w.builder.tree('npm')).toEqual({ 'index.json': '{"a":1}', pkgs: 'dir', 'pkgs/x': 'package bytes' })
    expect(w.builder.tree('apt')).toEqual({ 'pkg.deb': 'deb' })
    expect(state.mounts.map(m => m.restore.kind)).toEqual(['injected', 'injected'])
    expect(logger.lines.filter(l => l.level === 'info' && /streamed into the build/.test(l.message))).toHaveLength(2)
    expect(logger.warnings).toEqual([])

    // The digest the stream computed is the one a download to a file would have given.
    const streamed = state.mounts.map(m => (m.restore.kind === 'injected' ? m.restore.entry.digest : ''))
    w.nextRun()
    w.store.open = undefined
    const plan = await w.plan([npm, apt])
    await restoreMounts(w.services, plan.engine, plan.state, LOOPBACK)
    expect(w.store.calls.restore).toBe(2)
    expect(plan.state.mounts.map(m => (m.restore.kind === 'injected' ? m.restore.entry.digest : ''))).toEqual(streamed)
  })

  test('a hostile entry found part way: that mount is emptied again in the builder, with a warning; the other is injected', async () => {
    w.store.streaming()
    const { state, engine } = await w.plan([npm, apt])
    const key = w.putExact(
      state,
      0,
      await makeTar([
        { name: './', type: 'directory', mode: 0o755 },
        { name: 'early', type: 'file', body: 'sent before the bad entry' },
        { name: 'sh', type: 'file', mode: 0o4755, body: 'x' }
      ])
    )
    w.putExact(state, 1, await mountArchive({ 'pkg.deb': 'deb' }))
    await restoreMounts(w.services, engine, state, LOOPBACK)

    expect(state.mounts[0]?.restore).toMatchObject({ kind: 'failed', matchedKey: key, reason: expect.stringMatching(/setuid/) })
    expect(w.builder.tree('npm')).toEqual({})
    expect(w.builder.tree('apt')).toEqual({ 'pkg.deb': 'deb' })
    expect(mountOutputs(state).map(o => o.hit)).toEqual([false, true])
    expect(logger.warnings).toEqual([
      expect.stringMatching(/^npm: the cache entry .* was refused on its way into the builder, the mount starts empty: .*setuid/)
    ])
  })

  test('a download cut part way through a file: the mount is emptied again, the stream stays whole for the next mount', async () => {
    const { state, engine } = await w.plan([npm, apt])
    const key = w.putExact(state, 0, await mountArchive({ big: 'y'.repeat(50_000), small: 's' }))
    w.putExact(state, 1, await mountArchive({ 'pkg.deb': 'deb' }))
    w.store.streaming({ key, bytes: 20_000 })
    await restoreMounts(w.services, engine, state, LOOPBACK)

    expect(state.mounts[0]?.restore).toMatchObject({ kind: 'failed', reason: expect.stringMatching(/connection reset/) })
    expect(w.builder.tree('npm')).toEqual({})
    expect(w.builder.tree('apt')).toEqual({ 'pkg.deb': 'deb' })
  })

  test('an entry over max-restore-size is dropped while it streams', async () => {
    w.store.streaming()
    const { state, engine } = await w.plan([npm], { maxRestoreBytes: 4096 })
    w.putExact(state, 0, await mountArchive({ big: 'x'.repeat(8192) }))
    await restoreMounts(w.services, engine, state, LOOPBACK)
    expect(state.mounts[0]?.restore).toMatchObject({ kind: 'failed', reason: expect.stringMatching(/4096-byte limit/) })
    expect(w.builder.tree('npm')).toEqual({})
  })

  test('the stream refused before it began (no network.host): the downloads go through the build context instead', async () => {
    w.builder.faults.refuseHostNetwork = true
    w.store.streaming()
    const { state, engine } = await w.plan([npm, apt])
    w.putExact(state, 0, await mountArchive({ a: 'a' }))
    w.putExact(state, 1, await mountArchive({ b: 'b' }))
    await restoreMounts(w.services, engine, state, LOOPBACK)
    expect(state.inject?.route).toBe('build-io')
    expect(state.mounts.map(m => m.restore.kind)).toEqual(['injected', 'injected'])
    expect([w.builder.tree('npm'), w.builder.tree('apt')]).toEqual([{ a: 'a' }, { b: 'b' }])
    expect(logger.warnings).toEqual([])
  })

  test('without a stream route (build context), entries are downloaded and checked first', async () => {
    w.store.streaming()
    const { state, engine } = await w.plan([npm], { extractVia: 'export' })
    w.putExact(state, 0, await mountArchive({ a: 'a' }))
    await restoreMounts(w.services, engine, state, undefined)
    expect(w.store.calls).toEqual({ open: 0, restore: 1 })
    expect(w.builder.tree('npm')).toEqual({ a: 'a' })
  })
})
