// The README's worked examples, run. Each example lives in examples/<name>/:
// a Dockerfile that builds here (offline, from the local busybox utility
// image, examples/sim.sh playing the package managers) with exactly the cache
// mounts of the README's realistic Dockerfile, and inputs.json with the action
// steps and inputs the README shows (readme.test.ts checks that they agree).
// Each example runs through the bundled entry points as on two fresh runners:
// main (miss) → the user's build writes → post saves; then, the builder
// pruned, main (hit) → a build in verify mode finds every file, owner, mode
// and mtime as written, and nothing excluded. The examples run a few at a
// time, each in its own cache namespace (BUILDKIT_CACHE_MOUNT_NS, the test's
// only addition to the README's inputs besides the local image).
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { cpSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

import { beforeAll, describe, expect, test } from '@jest/globals'

import { forEachLimit } from '../src/core/concurrency.js'
import { runStep, type StepResult } from '../test-support/action-runner.js'
import { EXAMPLES, exampleDef, exampleNames, mountFlags, OUR_ACTION, RUNNER_PLATFORM, testedDockerfile } from '../test-support/examples.js'
import { useItgEnv } from '../test-support/itg-env.js'
import { pruneBuilder, UTILITY_IMAGE, utilityImageContext } from '../test-support/user-build.js'

const itg = useItgEnv('examples')
const run = randomUUID().slice(0, 6)

type Entry = 'main' | 'post' | 'restore-only' | 'save-only'

interface MountOutput {
  id: string
  key: string
  'matched-key': string
  hit: boolean
  'restored-bytes': number
}

/** Resolves the `${{ }}` expressions the README's inputs use; anything else is a mistake in inputs.json. */
function resolve(
  values: Record<string, string>,
  matrix: Record<string, string>,
  outputs: Map<string, Record<string, string>>
): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(values)) {
    const resolved = value.replace(/\$\{\{\s*(.*?)\s*\}\}/g, (_, expr: string) => {
      // setup-buildx-action's builder; here the engine's current builder (an empty input).
      if (expr === 'steps.buildx.outputs.name') return ''
      // The examples play a push (the run that saves).
      if (expr === "github.event_name == 'push'") return 'true'
      const m = /^matrix\.([\w-]+)$/.exec(expr)
      if (m) {
        const v = matrix[m[1] ?? '']
        if (v === undefined) throw new Error(`${expr}: no such matrix value`)
        return v
      }
      const s = /^steps\.([\w-]+)\.outputs\.([\w-]+)$/.exec(expr)
      const v = s ? outputs.get(s[1] ?? '')?.[s[2] ?? ''] : undefined
      if (v === undefined) throw new Error(`cannot resolve \${{ ${expr} }} in input ${name}`)
      return v
    })
    if (resolved !== '') out[name] = resolved
  }
  return out
}

function entryFor(uses: string): { fill: Entry; finish?: Entry } {
  const sub = OUR_ACTION.exec(uses)?.[1]
  if (sub === '/restore') return { fill: 'restore-only' }
  if (sub === '/save') return { fill: 'save-only' }
  return { fill: 'main', finish: 'post' }
}

interface BuildResult {
  ok: boolean
  /** The files of the build's result (the sim reports), by name. */
  files: Record<string, string>
  log: string
}

/** The user's build of examples/<name>/Dockerfile (context: examples/), its result exported to a fresh directory. */
async function userBuild(name: string, args: Record<string, string>): Promise<BuildResult> {
  const out = join(itg.work, `out-${randomUUID()}`)
  mkdirSync(out, { recursive: true })
  const argv = ['buildx', 'build', '--progress=plain', ...utilityImageContext(), '-f', join(EXAMPLES, name, 'Dockerfile')]
  argv.push(...Object.entries(args).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]), '--output', `type=local,dest=${out}`, EXAMPLES)
  const child = spawn('docker', argv, { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  child.stderr.setEncoding('utf8').on('data', (c: string) => (log = (log + c).slice(-8000)))
  const code = await new Promise<number | null>((res, rej) => {
    child.once('error', rej)
    child.once('close', res)
  })
  const files = code === 0 ? Object.fromEntries(readdirSync(out).map(f => [f, readFileSync(join(out, f), 'utf8')])) : {}
  return { ok: code === 0, files, log }
}

/** Cache ids the tested Dockerfile uses, as BuildKit names them for `arch` (id defaults to the target). */
function expectedIds(name: string, arch: string): string[] {
  const ids = mountFlags(testedDockerfile(name))
    .map(f => JSON.parse(f) as { type: string; id?: string; target: string })
    .filter(m => m.type === 'cache')
    .map(m => (m.id ?? m.target).replace(/\$\{?TARGETARCH\}?/g, arch))
  return [...new Set(ids)].sort()
}

interface CycleResult {
  /** Per mount, from the second (warm) run's restore. */
  mounts: MountOutput[]
  /** Keys the first run saved. */
  saved: string[]
}

/**
 * One example as on two fresh runners in a row: `cold` restores nothing,
 * builds, saves; then (the builder pruned in between) `warm` restores and a
 * build verifies every file.
 */
function exampleRun(name: string, matrix: Record<string, string>): { cold: () => Promise<void>; warm: () => Promise<CycleResult> } {
  const def = exampleDef(name)
  const platform = matrix.platform ?? RUNNER_PLATFORM
  const arch = platform.split('/')[1] ?? 'amd64'
  // What the test adds to the README's inputs: the local utility image, and a cache namespace
  // (in the user's builds too), so that runs sharing the builder keep their caches apart.
  const ns = `ex-${run}-${name}-${arch}`
  const local = { 'utility-image': UTILITY_IMAGE, 'build-args': `BUILDKIT_CACHE_MOUNT_NS=${ns}` }
  // The engine builds linux/amd64 only: the arm64 job's build is played with its TARGETARCH.
  const buildArgs: Record<string, string> = { BUILDKIT_CACHE_MOUNT_NS: ns, ...(platform === RUNNER_PLATFORM ? {} : { TARGETARCH: arch }) }
  const workspace = join(itg.work, ns)
  cpSync(join(EXAMPLES, name), workspace, { recursive: true })
  const env = { ...itg.service.env(), RUNNER_TEMP: join(itg.work, `${ns}-temp`), GITHUB_WORKSPACE: workspace }
  const ids = expectedIds(name, arch)

  const step = async (entry: Entry, inputs: Record<string, string>, state?: Record<string, string>): Promise<StepResult> => {
    const r = await runStep(entry, { bundleDir: itg.bundleDir, inputs: { ...inputs, ...local }, env, cwd: workspace, ...(state ? { state } : {}) })
    if (r.exitCode !== 0 || r.errors.length > 0 || r.warnings.length > 0)
      throw new Error(`${ns} ${entry}: exit ${r.exitCode}\n${r.stdout}\n${r.stderr}`)
    return r
  }
  /**
   * Runs the example's steps around `build`: main ... post, or restore ... build ... save.
   * `post: false` leaves out the main action's post step (the warm run only checks the restore).
   */
  const job = async (build: () => Promise<void>, post: boolean): Promise<{ first: StepResult; last?: StepResult }> => {
    const outputs = new Map<string, Record<string, string>>()
    let first: StepResult | undefined
    let last: StepResult | undefined
    let built = false
    for (const s of def.steps) {
      const { fill, finish } = entryFor(s.uses)
      if (fill === 'save-only' && !built) {
        await build()
        built = true
      }
      const r = await step(fill, resolve(s.with, matrix, outputs))
      if (s.id) outputs.set(s.id, r.outputs)
      first ??= r
      last = r
      if (finish && post) {
        await build()
        built = true
        last = await step(finish, resolve(s.with, matrix, outputs), r.state)
      }
    }
    if (!first) throw new Error(`${name}: no steps`)
    if (!built) await build()
    return { first, ...(last !== first ? { last } : {}) }
  }
  const mountsOf = (r: StepResult): MountOutput[] => (JSON.parse(r.outputs.mounts ?? '[]') as MountOutput[]).sort((a, b) => a.id.localeCompare(b.id))
  const savedKeys = (): string[] =>
    itg.service
      .entries()
      .map(e => e.key)
      .filter(k => k.includes(`-${ns}_`))
      .sort()

  // The sub-actions example's first build fails its tests after downloading.
  const failing = name === 'sub-actions'
  let written: Record<string, string> | undefined
  let saved: string[] = []

  const cold = async (): Promise<void> => {
    const r = await job(async () => {
      const b = await userBuild(name, { ...buildArgs, MODE: 'write', ...(failing ? { TESTS: 'fail' } : {}) })
      if (failing) {
        expect(b.log).toContain('FAILED tests/test_api.py::test_login')
        expect(b.ok).toBe(false)
      } else {
        if (!b.ok) throw new Error(`${ns}: the write build failed:\n${b.log}`)
        written = b.files
      }
    }, true)
    expect(mountsOf(r.first).map(m => m.id)).toEqual(ids)
    expect(mountsOf(r.first).every(m => !m.hit)).toBe(true)
    expect(r.first.outputs['cache-hit']).toBe('false')
    saved = savedKeys()
    if (saved.length !== ids.length) throw new Error(`${ns}: ${saved.length} of ${ids.length} mounts saved:\n${(r.last ?? r.first).stdout}`)
  }

  const warm = async (): Promise<CycleResult> => {
    let found: Record<string, string> = {}
    const r = await job(async () => {
      const b = await userBuild(name, { ...buildArgs, MODE: 'verify' })
      if (!b.ok) throw new Error(`${ns}: the verify build failed:\n${b.log}`)
      found = b.files
    }, false)
    expect(r.first.outputs['cache-hit']).toBe('true')
    const mounts = mountsOf(r.first)
    expect(mounts.map(m => m.id)).toEqual(ids)
    for (const m of mounts) {
      expect(m.hit).toBe(true)
      expect(m['restored-bytes']).toBeGreaterThan(0)
      expect(m.key).not.toContain('-nofiles')
    }
    // Every file, owner, mode and mtime as the first build left them; nothing excluded came back.
    if (written) expect(found).toEqual(written)
    else expect(Object.values(found).join('')).toMatch(/^kept /m)
    // save/ after the warm build: nothing changed since the restore, nothing is uploaded.
    if (r.last) expect(r.last.stdout.match(/unchanged since restore/g)).toHaveLength(ids.length)
    expect(savedKeys()).toEqual(saved)
    return { mounts, saved }
  }
  return { cold, warm }
}

describe('each example, twice on fresh runners', () => {
  // Every example, and the matrix example once per platform: all first runs (a few at a
  // time: each has its own cache namespace), one prune (fresh runners), all second runs.
  const runs = exampleNames.flatMap(name =>
    (exampleDef(name).matrix ?? [{}]).map(matrix => ({ label: matrix.platform ? `${name} ${matrix.platform}` : name, name, matrix }))
  )
  const outcomes = new Map<string, CycleResult | { error: unknown }>()

  beforeAll(async () => {
    const started = runs.map(r => ({ label: r.label, run: exampleRun(r.name, r.matrix) }))
    const failed = new Set<string>()
    await forEachLimit(started, 3, async ({ label, run }) => {
      await run.cold().catch((error: unknown) => {
        failed.add(label)
        outcomes.set(label, { error })
      })
    })
    pruneBuilder('buildx')
    await forEachLimit(
      started.filter(s => !failed.has(s.label)),
      3,
      async ({ label, run }) => {
        outcomes.set(label, await run.warm().catch((error: unknown) => ({ error })))
      }
    )
  })

  const outcome = (label: string): CycleResult => {
    const o = outcomes.get(label)
    if (o === undefined) throw new Error(`${label} did not run`)
    if ('error' in o) throw o.error
    return o
  }

  test.each(runs.map(r => r.label))('%s', label => {
    expect(outcome(label).mounts.every(m => m.hit)).toBe(true)
  })

  test('matrix: each platform its own mount ids and keys', () => {
    const combos = exampleDef('matrix').matrix ?? []
    expect(combos.map(c => c.platform)).toEqual(['linux/amd64', 'linux/arm64'])
    const [amd, arm] = [outcome('matrix linux/amd64'), outcome('matrix linux/arm64')]
    // $TARGETARCH in the id: separate apt caches per platform.
    expect(amd.mounts.map(m => m.id)).toEqual(['apt-cache-amd64', 'apt-lib-amd64', 'pip'])
    expect(arm.mounts.map(m => m.id)).toEqual(['apt-cache-arm64', 'apt-lib-arm64', 'pip'])
    // The same pip cache id: the keys differ by their platform part only (the id part holds the
    // test's namespace, different per job here), the key files' hash is the same.
    const pip = (r: CycleResult): string => r.mounts.find(m => m.id === 'pip')?.key ?? ''
    const tail = (key: string): string => key.slice(key.indexOf('-linux-'))
    expect(pip(amd)).toMatch(/_pip_[0-9a-f]{8}-linux-amd64-[0-9a-f]{64}$/)
    expect(pip(arm)).toMatch(/_pip_[0-9a-f]{8}-linux-arm64-[0-9a-f]{64}$/)
    expect(tail(pip(arm))).toBe(tail(pip(amd)).replace('-linux-amd64-', '-linux-arm64-'))
    expect(new Set([...amd.saved, ...arm.saved]).size).toBe(6)
  })
})
