// Issue 7, parts 2-5 through the REAL bundled entry points: hostile inputs,
// cache-service faults (the local service's fault injection), engine faults
// (no daemon, no builder, an image that cannot be pulled, a CLI that dies
// mid-extract, a full disk) and concurrency (racing saves, matrix jobs).
// Expected every time: the step exits 0 (input errors excepted: exit 1 naming
// the input), a warning (or the cache library's info) says why, no partial
// entry is stored, nothing is left behind, and the next run works.
import { randomBytes, randomUUID } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'

import { idSegment, mountKeys } from '../src/core/keys.js'
import { runStep, type StepResult } from '../test-support/action-runner.js'
import type { CacheService, FaultSpec } from '../test-support/cache-service/server.js'
import {
  deadEngineEnv,
  dyingDocker,
  engineLeftovers,
  processesWith,
  runningBuilds,
  STALL_COMMAND,
  stallingUtilityImage,
  tmpfsOver,
  useTestEngine
} from '../test-support/hostile/engine-faults.js'
import { runIsolatedStep } from '../test-support/hostile/isolated.js'
import { clientEnv, plantBytes, plantedKey, plantMany, type GitHubClient, type Planting } from '../test-support/hostile/plant.js'
import { useItgEnv } from '../test-support/itg-env.js'
import { UTILITY_IMAGE, userBuild } from '../test-support/user-build.js'
import { makeTar, type RawEntry } from './helpers/tar.js'

const itg = useItgEnv('faults')
const { work, workspace } = itg
let service: CacheService
let stopEngine: (() => Promise<void>) | undefined
const defaultTemp = join(work, 'temp')
const run = randomUUID().slice(0, 8)
const prefix = `faults-${run}`
const PLATFORM = 'linux/amd64'

beforeAll(async () => {
  service = itg.service
  stopEngine = await useTestEngine(UTILITY_IMAGE)
  mkdirSync(defaultTemp, { recursive: true })
})

afterAll(async () => {
  await stopEngine?.()
})

type Entry = 'main' | 'post' | 'save-only'

async function step(
  entry: Entry,
  inputs: Record<string, string>,
  opts: { state?: Record<string, string>; env?: NodeJS.ProcessEnv; runnerTemp?: string } = {}
): Promise<StepResult> {
  const env = { ...service.env(), RUNNER_TEMP: opts.runnerTemp ?? defaultTemp, GITHUB_WORKSPACE: workspace, ...opts.env }
  return runStep(entry, { bundleDir: itg.bundleDir, inputs, env, cwd: workspace, ...(opts.state ? { state: opts.state } : {}) })
}

const log = (r: StepResult): string => `${r.stdout}\n${r.stderr}`
/** Exit 0, no error annotation; with the log attached when not. */
function expectOk(r: StepResult, allowErrors = false): void {
  expect({ exit: r.exitCode, errors: allowErrors ? [] : r.errors, ...(r.exitCode === 0 ? {} : { log: log(r) }) }).toEqual({ exit: 0, errors: [] })
}
const hits = (r: StepResult): boolean[] => (JSON.parse(r.outputs.mounts ?? '[]') as { hit: boolean }[]).map(m => m.hit)
/** What a step left in the archive root; inject's listings are left for post on purpose (a delta is computed against them). */
const leftovers = (runnerTemp = defaultTemp): string[] => {
  const dir = join(runnerTemp, 'buildkit-mount-cache')
  return existsSync(dir) ? readdirSync(dir).filter(name => !name.endsWith('.listing')) : []
}

const t = new Date('2024-03-04T05:06:07Z')
const tree = (name: string): RawEntry[] => [
  { name: './', type: 'directory', mode: 0o755, mtime: t },
  { name: `${name}.txt`, type: 'file', body: `${name}\n`, mode: 0o644, uid: 1000, mtime: t }
]

/** One mount of its own per scenario: id, inputs, keys, entries, a writer. */
function scenario(name: string, extra: Record<string, string> = {}, client: GitHubClient = 'stream') {
  const id = `f-${name}-${run}`
  const inputs = {
    mounts: `id=${id},target=/f`,
    'key-prefix': prefix,
    'key-platform': PLATFORM,
    'utility-image': UTILITY_IMAGE,
    client: 'buildx',
    ...extra
  }
  const base = mountKeys(prefix, id, inputs['key-platform'], '').base
  return {
    id,
    inputs,
    base,
    /** Stores a good entry for this mount; returns its key. */
    plant: async (runnerTemp = defaultTemp): Promise<string> => {
      const key = plantedKey(prefix, id, inputs['key-platform'])
      await plantBytes({ service, runnerTemp, workspace, client }, id, key, await makeTar(tree(name)))
      return key
    },
    /** The same, to store with others in one plantMany. */
    planting: async (): Promise<Planting> => {
      const data = await makeTar(tree(name))
      return { id, key: plantedKey(prefix, id, inputs['key-platform']), make: p => writeFileSync(p, data) }
    },
    entries: (): string[] =>
      service
        .entries()
        .filter(e => e.key.startsWith(`${prefix}-${idSegment(id)}-`))
        .map(e => e.key)
  }
}
type Scenario = ReturnType<typeof scenario>

/** One user build writing `content` into each scenario's mount (as the user's Dockerfile would). */
function fill(scenarios: Scenario[], content: string, bytes = 0): void {
  const flags = scenarios.map((s, i) => `--mount=type=cache,id=${s.id},target=/m${i}`).join(' ')
  const writes = scenarios
    .map((_, i) => `echo '${content}' > /m${i}/data && ${bytes > 0 ? `head -c ${bytes} /dev/urandom > /m${i}/blob && ` : ''}true`)
    .join(' && ')
  userBuild(
    'buildx',
    `FROM ${UTILITY_IMAGE}\nARG N\nRUN ${flags} ${writes} && mkdir -p /out && echo ok > /out/ok\n`,
    join(work, `fill-${randomUUID()}`),
    { N: randomUUID() }
  )
}

describe('inputs', () => {
  const cases: [string, string, Record<string, string>, RegExp][] = [
    ['mounts', 'id with a quote', { mounts: 'id=a\\"b,target=/a' }, /^Input "mounts line 1": failed to parse csv mounts: bare " in non-quoted field/],
    ['mounts', 'an unterminated quote', { mounts: 'id=a"b,target=/a' }, /^Input "mounts line 1": unexpected end of statement/],
    ['mounts', 'id with $', { mounts: 'id=$HOME,target=/a' }, /^Input "mounts line 1": id/],
    ['mounts', 'a --mount= fragment', { mounts: 'id=a,target=/a --mount=type=bind,source=/,target=/x' }, /^Input "mounts line 1"/],
    ['mounts', 'target with a space', { mounts: 'id=a,target=/a b' }, /^Input "mounts line 1": target/],
    ['mounts', 'target with a newline (JSON)', { mounts: '[{"id":"a","target":"/a\\nRUN evil"}]' }, /^Input "mounts\[0\]": target/],
    ['mounts', 'uid with a backslash', { mounts: 'id=a,target=/a,uid=10\\\\00' }, /^Input "mounts line 1": uid/],
    ['mounts', 'the same id twice', { mounts: 'id=a,target=/a\nid=a,target=/b' }, /^Input "mounts": cache id "a" is listed twice/],
    ['key-prefix', 'a # and spaces', { 'key-prefix': 'x # y' }, /^Input "key-prefix"/],
    ['utility-image', 'a newline', { 'utility-image': 'busybox\nRUN evil' }, /^Input "utility-image"/],
    ['utility-image', 'very long', { 'utility-image': `a${'b'.repeat(1000)}` }, /^Input "utility-image"/],
    ['builder', 'an option', { builder: 'x --allow=security.insecure' }, /^Input "builder"/],
    ['platform', 'a path', { platform: 'linux/../../etc' }, /^Input "platform"/],
    ['key-platform', 'a path', { 'key-platform': 'linux/../../etc' }, /^Input "key-platform"/]
  ]

  test('hostile values are refused: exit 1 naming the input, nothing touched', async () => {
    const results = await Promise.all(
      cases.map(([, , inputs]) => step('main', { mounts: 'id=ok,target=/ok', 'utility-image': UTILITY_IMAGE, ...inputs }))
    )
    cases.forEach(([input, what, , message], i) => {
      const r = results[i]!
      expect({ input, what, exit: r.exitCode, errors: r.errors.join('\n') }).toEqual({ input, what, exit: 1, errors: expect.stringMatching(message) })
    })
    expect(leftovers()).toEqual([])
  })
})

// Both GitHub cache clients: the stream client (service v2, the default) and the cache library (GHES, v1).
describe.each(['stream', 'library'] as const)('cache service faults, %s client', client => {
  const env = clientEnv(client)
  test('on restore: a warning, exit 0, the mount starts empty; the next run restores', async () => {
    interface Case {
      name: string
      fault: (s: Scenario, key: string) => FaultSpec
      hit: boolean
      warning?: RegExp
    }
    const lookup =
      (action: FaultSpec['action'], times?: number) =>
      (s: Scenario): FaultSpec => ({ match: { op: 'GetCacheEntryDownloadURL', key: s.base }, action, ...(times ? { times } : {}) })
    const download =
      (action: FaultSpec['action'], times?: number) =>
      (_s: Scenario, key: string): FaultSpec => ({ match: { op: 'blob-download', key }, action, ...(times ? { times } : {}) })
    const streamCases: Case[] = [
      { name: 'lookup-500-once', fault: lookup({ status: 500 }, 1), hit: true },
      { name: 'lookup-429-once', fault: lookup({ status: 429, retryAfterSeconds: 1 }, 1), hit: true },
      { name: 'lookup-503', fault: lookup({ status: 503 }), hit: false, warning: /GetCacheEntryDownloadURL: HTTP 503/ },
      { name: 'lookup-400', fault: lookup({ status: 400 }), hit: false, warning: /GetCacheEntryDownloadURL: HTTP 400/ },
      { name: 'lookup-refused', fault: lookup({ refuse: true }), hit: false, warning: /socket hang up|ECONNRESET/ },
      { name: 'lookup-slow', fault: lookup({ delayMs: 3000 }), hit: true },
      { name: 'download-reset-once', fault: download({ resetAfterBytes: 64 }, 1), hit: true },
      // A cut download resumes where it stopped (a Range request); one cut at every byte ends in a warning.
      { name: 'download-reset-twice', fault: download({ resetAfterBytes: 64 }, 2), hit: true },
      { name: 'download-reset', fault: download({ resetAfterBytes: 0 }), hit: false, warning: /cut off|ended after|aborted|ECONNRESET/ },
      { name: 'download-vanished', fault: download({ status: 404 }), hit: false, warning: /download: HTTP 404/ },
      { name: 'download-500', fault: download({ status: 500 }), hit: false, warning: /download: HTTP 500/ },
      { name: 'download-slow', fault: download({ delayMs: 3000 }), hit: true }
    ]
    const libraryCases: Case[] = [
      { name: 'lookup-500-once', fault: lookup({ status: 500 }, 1), hit: true },
      { name: 'lookup-503', fault: lookup({ status: 503 }), hit: false, warning: /Failed to restore: .*Failed to make request after 5 attempts/ },
      { name: 'lookup-400', fault: lookup({ status: 400 }), hit: false, warning: /Failed to restore: .*Received non-retryable error/ },
      { name: 'lookup-refused', fault: lookup({ refuse: true }), hit: false, warning: /Failed to restore/ },
      { name: 'lookup-slow', fault: lookup({ delayMs: 3000 }), hit: true },
      { name: 'download-reset', fault: download({ resetAfterBytes: 64 }), hit: false, warning: /could not be downloaded or unpacked/ },
      { name: 'download-vanished', fault: download({ status: 404 }), hit: false, warning: /could not be downloaded or unpacked/ },
      { name: 'download-500', fault: download({ status: 500 }), hit: false, warning: /could not be downloaded or unpacked/ },
      { name: 'download-slow', fault: download({ delayMs: 3000 }), hit: true }
    ]
    const cases = client === 'stream' ? streamCases : libraryCases
    const planted = await Promise.all(
      cases.map(async c => {
        const s = scenario(`r-${client}-${c.name}`, {}, client)
        return { c, s, planting: await s.planting() }
      })
    ).then(async list => {
      await plantMany(
        { service, runnerTemp: defaultTemp, workspace, client },
        list.map(p => p.planting)
      )
      return list.map(p => ({ ...p, key: p.planting.key }))
    })
    const faultIds = planted.map(p => service.faults.add(p.c.fault(p.s, p.key)))
    const results = await Promise.all(planted.map(p => step('main', p.s.inputs, { env })))
    for (const id of faultIds) service.faults.remove(id)

    planted.forEach(({ c, s }, i) => {
      const r = results[i]!
      expectOk(r)
      expect({ case: c.name, hits: hits(r) }).toEqual({ case: c.name, hits: [c.hit] })
      if (c.warning) expect({ case: c.name, warnings: r.warnings.join('\n') }).toEqual({ case: c.name, warnings: expect.stringMatching(c.warning) })
      else expect({ case: c.name, warnings: r.warnings }).toEqual({ case: c.name, warnings: [] })
      expect(log(r)).toContain(s.id)
    })
    expect(leftovers()).toEqual([])

    // The next run, with the service healthy again, restores every one of them.
    const again = await Promise.all(planted.map(p => step('main', p.s.inputs, { env })))
    again.forEach((r, i) => {
      expectOk(r)
      expect({ case: planted[i]!.c.name, hits: hits(r), warnings: r.warnings }).toEqual({ case: planted[i]!.c.name, hits: [true], warnings: [] })
    })
  }, 300_000)

  test("on save: a warning or the library's info, exit 0, no partial entry; the next save works", async () => {
    interface Case {
      name: string
      fault: (key: string) => FaultSpec
      saved: boolean
      warning?: RegExp
      info?: RegExp
    }
    const at =
      (op: FaultSpec['match']['op'], action: FaultSpec['action'], times?: number) =>
      (key: string): FaultSpec => ({ match: { op, key }, action, ...(times ? { times } : {}) })
    const streamCases: Case[] = [
      { name: 'create-503-once', fault: at('CreateCacheEntry', { status: 503 }, 1), saved: true },
      { name: 'create-429-once', fault: at('CreateCacheEntry', { status: 429, retryAfterSeconds: 1 }, 1), saved: true },
      { name: 'create-400', fault: at('CreateCacheEntry', { status: 400 }), saved: false, warning: /CreateCacheEntry: HTTP 400/ },
      { name: 'create-409', fault: at('CreateCacheEntry', { status: 409 }), saved: false, info: /exists already \(or another job is saving it\)/ },
      { name: 'create-slow', fault: at('CreateCacheEntry', { delayMs: 3000 }), saved: true },
      { name: 'upload-500-once', fault: at('blob-upload', { status: 500 }, 1), saved: true },
      { name: 'upload-400', fault: at('blob-upload', { status: 400 }), saved: false, warning: /upload block: HTTP 400/ },
      { name: 'upload-reset', fault: at('blob-upload', { resetAfterBytes: 100 }, 1), saved: true },
      { name: 'finalize-500-once', fault: at('FinalizeCacheEntryUpload', { status: 500 }, 1), saved: true },
      { name: 'finalize-400', fault: at('FinalizeCacheEntryUpload', { status: 400 }), saved: false, warning: /FinalizeCacheEntryUpload: HTTP 400/ }
    ]
    const libraryCases: Case[] = [
      { name: 'create-503-once', fault: at('CreateCacheEntry', { status: 503 }, 1), saved: true },
      { name: 'create-400', fault: at('CreateCacheEntry', { status: 400 }), saved: false, info: /Failed to save: Unable to reserve cache/ },
      { name: 'create-409', fault: at('CreateCacheEntry', { status: 409 }), saved: false, info: /another job may be creating this cache/ },
      { name: 'create-slow', fault: at('CreateCacheEntry', { delayMs: 3000 }), saved: true },
      { name: 'upload-500-once', fault: at('blob-upload', { status: 500 }, 1), saved: true },
      { name: 'upload-400', fault: at('blob-upload', { status: 400 }), saved: false, warning: /Failed to save/ },
      { name: 'upload-reset', fault: at('blob-upload', { resetAfterBytes: 100 }, 1), saved: true },
      { name: 'finalize-500-once', fault: at('FinalizeCacheEntryUpload', { status: 500 }, 1), saved: true },
      {
        name: 'finalize-400',
        fault: at('FinalizeCacheEntryUpload', { status: 400 }),
        saved: false,
        warning: /Failed to save: .*Received non-retryable error/
      }
    ]
    const cases = client === 'stream' ? streamCases : libraryCases
    const scenarios = cases.map(c => scenario(`s-${client}-${c.name}`, {}, client))
    fill(scenarios, 'first')
    // The saved key ends with the content digest: a probe save under another prefix tells it,
    // so each fault can match its own key and all the saves run at once.
    const probePrefix = `${prefix}-probe`
    const probes = await Promise.all(scenarios.map(s => step('save-only', { ...s.inputs, 'key-prefix': probePrefix }, { env })))
    probes.forEach(r => expectOk(r))
    const keyOf = (s: Scenario): string => {
      const probe = service.entries().find(e => e.key.startsWith(`${mountKeys(probePrefix, s.id, PLATFORM, '').base}-`))
      if (!probe) throw new Error(`no probe entry for ${s.id} (was the builder pruned meanwhile?)`)
      return `${s.base}-${probe.key.slice(probe.key.lastIndexOf('-') + 1)}`
    }
    const faultIds = cases.map((c, i) => service.faults.add(c.fault(keyOf(scenarios[i]!))))
    const results = await Promise.all(scenarios.map(s => step('save-only', s.inputs, { env })))
    for (const id of faultIds) service.faults.remove(id)
    cases.forEach((c, i) => {
      const r = results[i]!
      const s = scenarios[i]!
      expectOk(r)
      expect({ case: c.name, entries: s.entries().length, ...(s.entries().length === (c.saved ? 1 : 0) ? {} : { log: log(r) }) }).toEqual({
        case: c.name,
        entries: c.saved ? 1 : 0
      })
      if (c.warning) expect({ case: c.name, warnings: r.warnings.join('\n') }).toEqual({ case: c.name, warnings: expect.stringMatching(c.warning) })
      else expect({ case: c.name, warnings: r.warnings }).toEqual({ case: c.name, warnings: [] })
      if (c.info) expect(r.stdout).toMatch(c.info)
    })
    expect(leftovers()).toEqual([])
    // The next job (new content, so a new key) saves every mount that was not saved.
    fill(scenarios, 'second')
    const next = await Promise.all(scenarios.map(s => step('save-only', s.inputs, { env })))
    next.forEach((r, i) => {
      expectOk(r)
      expect({ case: cases[i]!.name, warnings: r.warnings, entries: scenarios[i]!.entries().length }).toEqual({
        case: cases[i]!.name,
        warnings: [],
        entries: cases[i]!.saved ? 2 : 1
      })
    })
  }, 300_000)
})

describe('engine faults', () => {
  // No daemon: DOCKER_HOST goes nowhere, and so does the docker-container builder's node (its endpoint is kept in DOCKER_CONFIG).
  const dead = (): NodeJS.ProcessEnv => deadEngineEnv(join(work, 'dead-engine-config'))
  const cases: { name: string; inputs?: Record<string, string>; env?: () => NodeJS.ProcessEnv; reason: RegExp }[] = [
    { name: 'no-daemon', env: dead, reason: /Cannot connect to the Docker daemon/ },
    { name: 'no-builder', inputs: { builder: 'does-not-exist' }, reason: /no builder "does-not-exist" found/ },
    { name: 'no-image', inputs: { 'utility-image': 'localhost:1/nope:latest' }, reason: /localhost:1\/nope:latest/ }
  ]

  test('no daemon, no builder, an image that cannot be pulled: inject and extract warn with the reason, fast; nothing stored or left behind', async () => {
    const planted = cases.map(c => ({ ...c, s: scenario(`e-${c.name}`, c.inputs) }))
    await plantMany({ service, runnerTemp: defaultTemp, workspace }, await Promise.all(planted.map(p => p.s.planting())))
    const before = { entries: service.entries().length, engine: engineLeftovers(UTILITY_IMAGE) }
    const started = Date.now()
    await Promise.all(
      planted.map(async ({ name, env: makeEnv, reason, s }) => {
        const env = makeEnv?.()
        const main = await step('main', s.inputs, env ? { env } : {})
        expectOk(main)
        expect({ name, hits: hits(main), warnings: main.warnings.join('\n') }).toEqual({
          name,
          hits: [false],
          warnings: expect.stringMatching(/Could not inject the restored caches/)
        })
        expect({ name, warnings: main.warnings.join('\n') }).toEqual({ name, warnings: expect.stringMatching(reason) })
        const post = await step('post', s.inputs, { state: main.state, ...(env ? { env } : {}) })
        expectOk(post)
        expect({ name, warnings: post.warnings.join('\n') }).toEqual({ name, warnings: expect.stringMatching(/Could not extract the cache mounts/) })
        expect({ name, warnings: post.warnings.join('\n') }).toEqual({ name, warnings: expect.stringMatching(reason) })
      })
    )
    expect(Date.now() - started).toBeLessThan(60_000)
    expect(service.entries().length).toBe(before.entries)
    expect(leftovers()).toEqual([])
    expect(engineLeftovers(UTILITY_IMAGE)).toEqual(before.engine)
  })

  test('the docker CLI dies during extract (output cut mid-stream; killed as the RUN starts): a warning, nothing stored or left behind; the next post saves', async () => {
    const variants: [string, NodeJS.ProcessEnv, Record<string, string>][] = [
      ['bytes', { BMC_DIE: 'bytes', BMC_DIE_BYTES: '30000' }, { 'extract-via': 'export' }],
      ['run', { BMC_DIE: 'run' }, {}]
    ]
    const before = { entries: service.entries().length, engine: engineLeftovers(UTILITY_IMAGE) }
    const runs = await Promise.all(
      variants.map(async ([name, die, extra]) => {
        const s = scenario(`e-die-${name}`, extra)
        const main = await step('main', s.inputs)
        expectOk(main)
        return { name, die, s, main }
      })
    )
    fill(
      runs.map(r => r.s),
      'die',
      256 * 1024
    )
    const posts = await Promise.all(
      runs.map(({ name, die, s, main }) => {
        const bin = join(work, `dying-${name}`)
        dyingDocker(bin)
        return step('post', s.inputs, { state: main.state, env: { PATH: `${bin}:${process.env.PATH}`, ...die } })
      })
    )
    posts.forEach((post, i) => {
      expectOk(post)
      expect({ name: runs[i]!.name, warnings: post.warnings.join('\n') }).toEqual({
        name: runs[i]!.name,
        warnings: expect.stringMatching(/Could not extract the cache mounts from the builder; nothing is saved/)
      })
    })
    expect(service.entries().length).toBe(before.entries)
    expect(leftovers()).toEqual([])
    expect(engineLeftovers(UTILITY_IMAGE)).toEqual(before.engine)
    // The engine is fine: the next post saves.
    const next = await Promise.all(runs.map(({ s, main }) => step('post', s.inputs, { state: main.state })))
    next.forEach((r, i) => {
      expectOk(r)
      const entries = runs[i]!.s.entries().length
      expect({ name: runs[i]!.name, warnings: r.warnings, entries, ...(entries === 1 ? {} : { log: log(r) }) }).toEqual({
        name: runs[i]!.name,
        warnings: [],
        entries: 1
      })
    })
  })

  test('a generated build that hangs (a utility image whose RUN never returns): inject and extract are stopped at the idle deadline with a warning, the job goes on with empty mounts, nothing is saved or left behind', async () => {
    const idle = 4
    const env = { BUILDKIT_MOUNT_CACHE_IDLE_TIMEOUT: String(idle) }
    const s = scenario('hung', { 'utility-image': stallingUtilityImage(UTILITY_IMAGE) })
    await s.plant()
    // README "Deadlines": a generated build is stopped after `idle` s without output or stream byte
    // (SIGTERM, SIGKILL 10 s later); a phase runs at most two (a stream, then the build's own channels).
    // The rest is the builds' start-up on a busy 2-core machine.
    const bound = 2 * (idle + 10) * 1000 + 30_000
    const before = { entries: s.entries(), builds: runningBuilds(), engine: engineLeftovers(UTILITY_IMAGE) }
    const timed = async (run: () => Promise<StepResult>): Promise<{ r: StepResult; ms: number }> => {
      const started = Date.now()
      const r = await run()
      return { r, ms: Date.now() - started }
    }
    /** What a stopped build could leave: its RUN, the generated build's CLI, a step (and its listener) still running. */
    const behind = (): Record<string, unknown> => ({
      runs: processesWith(STALL_COMMAND),
      clis: processesWith(`BMC_NONCE=`),
      steps: processesWith(itg.bundleDir),
      builds: runningBuilds()?.filter(b => !before.builds?.includes(b)) ?? 'buildx cannot tell',
      engine: engineLeftovers(UTILITY_IMAGE),
      temp: leftovers()
    })
    const clean = { runs: [], clis: [], steps: [], builds: before.builds ? [] : 'buildx cannot tell', engine: before.engine, temp: [] }

    const main = await timed(() => step('main', s.inputs, { env }))
    expectOk(main.r)
    expect({ hits: hits(main.r), warnings: main.r.warnings.join('\n') }).toEqual({
      hits: [false],
      warnings: expect.stringMatching(new RegExp(`Could not inject the restored caches.*nothing happened for ${idle} s`))
    })
    expect(main.ms).toBeLessThan(bound)
    expect(behind()).toEqual(clean)

    // The user's build runs: the mount starts empty (nothing of the stopped inject in it), and fills it.
    const out = join(work, `hung-${run}`)
    userBuild(
      'buildx',
      `FROM ${UTILITY_IMAGE}\nARG N\nRUN --mount=type=cache,id=${s.id},target=/m mkdir -p /out && ls -A /m > /out/before && echo hung > /m/data\n`,
      out,
      {
        N: randomUUID()
      }
    )
    expect(readFileSync(join(out, 'out/before'), 'utf8')).toBe('')

    const post = await timed(() => step('post', s.inputs, { state: main.r.state, env }))
    expectOk(post.r)
    expect(post.r.warnings.join('\n')).toMatch(
      new RegExp(`Could not extract the cache mounts from the builder; nothing is saved.*nothing happened for ${idle} s`)
    )
    expect(post.ms).toBeLessThan(bound)
    expect(s.entries()).toEqual(before.entries)
    expect(behind()).toEqual(clean)

    // Nothing holds the builder or the mount (a RUN still running would hold its locked cache mount):
    // the next job, with the working image, restores at once.
    const inputs = { ...s.inputs, 'utility-image': UTILITY_IMAGE }
    const next = await timed(() => step('main', inputs))
    expectOk(next.r)
    expect({ hits: hits(next.r), warnings: next.r.warnings }).toEqual({ hits: [true], warnings: [] })
    expect(next.ms).toBeLessThan(60_000)
  }, 300_000)

  test('disk full (a 1 MiB tmpfs as RUNNER_TEMP): a restore streamed into the build needs no disk (one to a file warns), a save warns, nothing left behind, the space is free again', async () => {
    const temp = join(work, 'small-temp')
    mkdirSync(temp, { recursive: true })
    const big = scenario('disk-random')
    const bomb = scenario('disk-zeros')
    const fits = scenario('disk-fits')
    // Planted with the same RUNNER_TEMP path (the cache version hashes it), before the tmpfs goes on top.
    await plantBytes(
      { service, runnerTemp: temp, workspace },
      big.id,
      plantedKey(prefix, big.id, PLATFORM),
      await makeTar([...tree('r'), { name: 'blob', type: 'file', body: randomBytes(3 << 20) }])
    )
    await plantBytes(
      { service, runnerTemp: temp, workspace },
      bomb.id,
      plantedKey(prefix, bomb.id, PLATFORM),
      await makeTar([...tree('z'), { name: 'zeros', type: 'file', body: Buffer.alloc(16 << 20) }])
    )
    await fits.plant(temp)
    rmSync(temp, { recursive: true, force: true })
    mkdirSync(temp)
    const unmount = tmpfsOver(temp, '1m')
    if (!unmount) {
      console.warn('cannot mount a tmpfs here: disk-full case skipped')
      return
    }
    try {
      const inputs = { ...fits.inputs, mounts: [big, bomb, fits].map((s, i) => `id=${s.id},target=/d${i}`).join('\n') }
      const before = service.entries().length
      /** Post: the mounts now hold more than the disk takes (a save still writes each archive before its upload). */
      const postOnFullDisk = async (state: Record<string, string>): Promise<void> => {
        fill([big, bomb, fits], 'full', 3 << 20)
        const post = await step('post', inputs, { runnerTemp: temp, state })
        expectOk(post)
        expect(post.warnings.join('\n')).toMatch(/Could not extract the cache mounts from the builder; nothing is saved/)
        expect(log(post)).toMatch(/no space left on device|ENOSPC/i)
        expect(service.entries().length).toBe(before)
        expect(leftovers(temp)).toEqual([])
      }
      const main = await step('main', inputs, { runnerTemp: temp })
      expectOk(main)
      if (/streamed into the build/.test(log(main))) {
        // The stream client over a stream: entries go from the download into the build, nothing on the runner's disk.
        expect({ hits: hits(main), warnings: main.warnings }).toEqual({ hits: [true, true, true], warnings: [] })
        expect(log(main).match(/streamed into the build/g)).toHaveLength(3)
        expect(leftovers(temp)).toEqual([])
        await postOnFullDisk(main.state)
        return
      }
      // Restores run concurrently: the mount that fits may lose the race for space, but not silently.
      expect(hits(main).slice(0, 2)).toEqual([false, false])
      const warnings = main.warnings.join('\n')
      expect(warnings).toMatch(new RegExp(`${big.id}: cannot restore the cache entry`))
      expect(warnings).toMatch(new RegExp(`${bomb.id}: cannot restore the cache entry`))
      if (!hits(main)[2]) expect(warnings).toMatch(new RegExp(`${fits.id}: cannot restore the cache entry`))
      expect(log(main)).toMatch(/no space left on device|ENOSPC/i)
      expect(leftovers(temp)).toEqual([])
      // Nothing of the failed restores occupies the disk: the next run restores the mount that fits.
      const again = await step('main', fits.inputs, { runnerTemp: temp })
      expectOk(again)
      expect({ hits: hits(again), warnings: again.warnings }).toEqual({ hits: [true], warnings: [] })
      expect(leftovers(temp)).toEqual([])

      await postOnFullDisk(main.state)
    } finally {
      unmount()
    }
  }, 300_000)
})

describe('concurrency (each job on a runner of its own: same RUNNER_TEMP path, private directory, a workspace of its own)', () => {
  const jobTemp = join(work, 'job-temp')
  const isolated = (
    entry: Entry,
    inputs: Record<string, string>,
    job: string,
    state?: Record<string, string>,
    extraEnv: NodeJS.ProcessEnv = {}
  ): Promise<StepResult> => {
    const privateTemp = join(work, `job-${job}`)
    // Archives pass through the workspace on their way to the cache client.
    const jobWorkspace = join(work, `ws-${job}`)
    for (const dir of [privateTemp, jobTemp, jobWorkspace]) mkdirSync(dir, { recursive: true })
    return runIsolatedStep(entry, {
      bundleDir: itg.bundleDir,
      inputs,
      env: { ...service.env(), GITHUB_WORKSPACE: jobWorkspace, ...extraEnv },
      cwd: jobWorkspace,
      runnerTemp: jobTemp,
      privateTemp,
      ...(state ? { state } : {})
    })
  }
  const jobLeftovers = (job: string): string[] => leftovers(join(work, `job-${job}`))

  test('two post steps saving the same key at once: one entry, the other logs and exits 0', async () => {
    const s = scenario('race')
    const main = await isolated('main', s.inputs, 'race-a')
    expectOk(main)
    fill([s], 'race', 2 << 20)
    const [a, b] = await Promise.all([isolated('post', s.inputs, 'race-a', main.state), isolated('post', s.inputs, 'race-b', main.state)])
    for (const r of [a!, b!]) {
      expectOk(r)
      expect(r.warnings).toEqual([])
    }
    expect(s.entries()).toHaveLength(1)
    const logs = `${a!.stdout}\n${b!.stdout}`
    expect(logs.match(new RegExp(`${s.id}: saved `, 'g'))).toHaveLength(1)
    expect(logs).toMatch(/already in the cache|another job may be creating this cache/)
    expect([...jobLeftovers('race-a'), ...jobLeftovers('race-b')]).toEqual([])
    // Whichever won, the entry is whole: the next job restores it.
    const next = await isolated('main', s.inputs, 'race-c')
    expectOk(next)
    expect({ hits: hits(next), warnings: next.warnings }).toEqual({ hits: [true], warnings: [] })
  })

  test('two matrix jobs with different platforms saving at once: separate entries', async () => {
    const id = `f-matrix-${run}`
    const jobs = ['linux/amd64', 'linux/arm64'].map(platform => ({
      job: `matrix-${platform.replace('/', '-')}`,
      inputs: { mounts: `id=${id},target=/m`, 'key-prefix': prefix, 'key-platform': platform, 'utility-image': UTILITY_IMAGE, client: 'buildx' }
    }))
    const mains = await Promise.all(jobs.map(j => isolated('main', j.inputs, j.job)))
    mains.forEach(r => expectOk(r))
    fill([{ id } as Scenario], 'matrix')
    const posts = await Promise.all(jobs.map((j, i) => isolated('post', j.inputs, j.job, mains[i]!.state)))
    posts.forEach(r => {
      expectOk(r)
      expect(r.warnings).toEqual([])
    })
    const keys = service
      .entries()
      .map(e => e.key)
      .filter(k => k.startsWith(`${prefix}-${idSegment(id)}-`))
    expect(keys).toHaveLength(2)
    expect(keys.some(k => k.includes('-linux-amd64-'))).toBe(true)
    expect(keys.some(k => k.includes('-linux-arm64-'))).toBe(true)
  })
})
