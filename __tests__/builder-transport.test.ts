import { Readable } from 'node:stream'

import { describe, expect, test } from '@jest/globals'

import { BuildIoTransport } from '../src/builder/build-io-transport.js'
import { readInjectResult, resultFor } from '../src/builder/manifests.js'
import { LOOPBACK, routePlan, type RouteChoice, type StreamReach } from '../src/builder/route.js'
import { StreamTransport } from '../src/builder/stream-transport.js'
import { runPhase, shortReason, type Transport } from '../src/builder/transport.js'
import { realServices } from '../src/action/services.js'
import { runCommand } from '../src/builder/command.js'
import { archivePathOf, defaultArchiveRoot } from '../src/core/job.js'
import { ReadyQueue } from '../src/core/ready-queue.js'
import { restoreMounts } from '../src/core/restore.js'
import { saveMounts } from '../src/core/save.js'
import { archiveRootOf } from '../src/core/services.js'
import { mountArchive, useWorld, type World } from '../test-support/fakes/harness.js'
import { makeTar } from '../test-support/fakes/tar.js'

/** The transports and the route plan, where the flows of core-restore/core-save do not reach. */
let w: World
useWorld(world => (w = world))

const npm = { id: 'npm', target: '/root/.npm' }
const apt = { id: 'apt', target: '/var/cache/apt' }

describe('runPhase and the route plan', () => {
  test('an empty plan is an error', async () => {
    await expect(runPhase([], 'inject', async () => 1)).rejects.toThrow('no route to inject by')
  })

  test('a final failure is thrown at once, whatever follows', async () => {
    const final: Transport = { ...new BuildIoTransport(), classify: () => 'final', label: () => 'x', through: () => 'x' } as unknown as Transport
    let tried = 0
    await expect(
      runPhase([final, new BuildIoTransport()], 'extract', async () => {
        tried++
        throw new Error('disk full')
      })
    ).rejects.toThrow('disk full')
    expect(tried).toBe(1)
  })

  test('shortReason: the first non-empty line, at most 160 characters', () => {
    expect(shortReason(new Error('\n\n  first line  \nsecond'))).toBe('first line')
    expect(shortReason('')).toBe('unknown error')
    const long = shortReason('x'.repeat(500))
    expect(long).toHaveLength(160)
    expect(long.endsWith('...')).toBe(true)
  })

  test.each([
    ['export', LOOPBACK, false, ['build-io']],
    ['loopback', undefined, false, ['loopback']],
    ['loopback', LOOPBACK, true, ['loopback']],
    ['auto', LOOPBACK, false, ['loopback', 'build-io']],
    ['auto', LOOPBACK, true, ['build-io']],
    ['auto', undefined, false, ['build-io']],
    ['auto', { route: 'gateway', host: '172.17.0.1', network: 'default' }, false, ['gateway', 'build-io']]
  ] as [RouteChoice, StreamReach | undefined, boolean, string[]][])('routePlan(%s, %j, refused %s)', (choice, reach, refused, routes) => {
    expect(routePlan(choice, reach, refused).map(t => t.route)).toEqual(routes)
  })

  test('labels for the log lines', () => {
    const gw = new StreamTransport({ host: '172.17.0.1', network: 'default', route: 'gateway' })
    expect(gw.label('inject')).toBe('gateway stream at 172.17.0.1')
    expect(gw.through('extract')).toBe('the gateway stream at 172.17.0.1')
    const io = new BuildIoTransport()
    expect([io.label('inject'), io.label('extract'), io.through('inject'), io.through('extract')]).toEqual([
      'build context',
      'build exporter',
      'the build context',
      "the build's exporter"
    ])
    expect(io.classify(new Error('x'))).toBe('final')
  })

  test('build-io inject with nothing restored runs no build', async () => {
    const ready = new ReadyQueue<{ index: number; archivePath: string }>()
    ready.end()
    const engine = { client: 'buildx' as const, docker: 'docker' }
    const result = await new BuildIoTransport().inject(w.builder.run, {
      engine,
      image: 'busybox:1.36',
      mounts: [{ index: 0, spec: npm }],
      ready,
      buildArgs: {},
      bytes: 0
    })
    expect(result).toEqual({ injected: [], dropped: new Map(), manifests: new Map(), listings: new Map() })
    expect(w.builder.builds).toEqual([])
  })
})

describe('extract streams that do not add up', () => {
  async function hitThenPost(extractVia: 'auto' | 'export' = 'auto') {
    const first = await w.plan([npm, apt], { extractVia })
    await restoreMounts(w.services, first.engine, first.state, LOOPBACK)
    w.builder.write('npm', 'f', 'x')
    w.builder.write('apt', 'g', 'y')
    return saveMounts(w.services, first.engine, first.state, LOOPBACK)
  }

  test('a mount neither archived nor listed unchanged: the split fails on this side (final), nothing stored', async () => {
    w.builder.faults.extractOmits = 1
    const report = await hitThenPost()
    expect(report.saves.get(0)).toEqual({
      kind: 'failed',
      reason: 'extract failed: the extract stream has no c1 and does not list them as unchanged'
    })
    expect(report.saves.get(1)).toEqual(report.saves.get(0))
    expect(w.builder.builds.filter(b => b.kind === 'extract').map(b => b.via)).toEqual(['stream'])
    expect(w.store.entries.size).toBe(0)
  })

  test("the exporter's result without mounts.tar", async () => {
    w.builder.faults.exportWithoutFile = true
    const report = await hitThenPost('export')
    expect(report.saves.get(0)).toEqual({ kind: 'failed', reason: "extract failed: the extract build's output has no mounts.tar" })
  })

  test('the stream build fails after sending everything: the build is the failure, so the exporter is tried', async () => {
    w.builder.faults.extractExit = 'after-stream'
    const report = await hitThenPost()
    expect(report.extract).toEqual({ route: 'build-io', fallback: expect.stringContaining('did not complete successfully') })
    expect([...report.saves.values()].map(s => s.kind)).toEqual(['saved', 'saved'])
  })

  // The truncation the dying build causes settles before its exit is seen: it is the build's failure, not this side's.
  test('the stream build dies mid-stream: the build is the failure, so the exporter is tried', async () => {
    w.builder.faults.extractExit = 'mid-stream'
    const report = await hitThenPost()
    expect(report.extract).toEqual({ route: 'build-io', fallback: expect.stringContaining('did not complete successfully') })
    expect([...report.saves.values()].map(s => s.kind)).toEqual(['saved', 'saved'])
  })
})

describe('a download that settles after the inject build failed', () => {
  test('is not taken: failed, with its matched key', async () => {
    w.builder.faults.failBuilds = 'inject'
    const { state, engine } = await w.plan([npm, apt], { extractVia: 'loopback' })
    const keyA = `${state.mounts[0]?.keys.base}-0000000000000000`
    const keyB = `${state.mounts[1]?.keys.base}-0000000000000000`
    w.store.put(keyA, await mountArchive({ a: '1' }))
    w.store.put(keyB, await mountArchive({ b: '2' }))
    let release!: () => void
    w.store.faults.gate = { key: keyB, open: new Promise<void>(resolve => (release = resolve)) }
    w.builder.onBuildEnd = () => release()
    await restoreMounts(w.services, engine, state, LOOPBACK)
    expect(state.mounts[0]?.restore).toMatchObject({ kind: 'failed', matchedKey: keyA, reason: expect.stringMatching(/^inject failed: /) })
    expect(state.mounts[1]?.restore).toEqual({ kind: 'failed', matchedKey: keyB, reason: 'not taken by the inject build' })
  })
})

describe('manifests', () => {
  test('only well-formed lines of the manifests file count, only for injected mounts; listings by index', async () => {
    const good = 'a'.repeat(32)
    const out = await makeTar([
      { name: 'injected', body: 'n\n' },
      { name: './manifests', body: `0 ${good}\n1 not-a-manifest\nx ${good}\n2 ${'b'.repeat(32)}\n1234567 ${good}\n` },
      { name: 'manifests/', type: 'directory' },
      { name: 'listing.2', body: 'two\n' },
      { name: 'listing.0', body: 'zero\n' },
      { name: 'listing.x', body: 'ignored\n' }
    ])
    const result = await readInjectResult(Readable.from([out]))
    expect(result.manifests).toEqual(
      new Map([
        [0, good],
        [2, 'b'.repeat(32)]
      ])
    )
    expect([...result.listings].map(([i, b]) => [i, b.toString()])).toEqual([
      [2, 'two\n'],
      [0, 'zero\n']
    ])
    const only = resultFor(result, [2])
    expect(only.manifests).toEqual(new Map([[2, 'b'.repeat(32)]]))
    expect([...only.listings.keys()]).toEqual([2])
  })
})

describe('defaults of the seams', () => {
  test('the archive root is under RUNNER_TEMP, or the temp dir', () => {
    expect(defaultArchiveRoot({ RUNNER_TEMP: '/runner/tmp' })).toBe('/runner/tmp/buildkit-mount-cache')
    expect(defaultArchiveRoot({})).toMatch(/buildkit-mount-cache$/)
    expect(archiveRootOf({ run: w.builder.run, cache: w.store })).toBe(defaultArchiveRoot())
    expect(archivePathOf('/r', { cacheNamespace: 'ns' }, 'npm')).toMatch(/^\/r\/ns_npm_[0-9a-f]{8}\.tar$/)
  })

  test('the real services run processes with runCommand', () => {
    expect(realServices('dir:/tmp/bmc-test-store').run).toBe(runCommand)
  })
})
