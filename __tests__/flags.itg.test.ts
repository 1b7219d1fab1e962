// On the real engine, through the bundled steps, the real cache client and the
// local cache service: lookup-only (outputs set, nothing injected, nothing
// saved), fail-on-cache-miss (fails cold, passes warm), exact-match (no
// fallback), a utility image that cannot be pulled (the warning names it), and
// an entry saved on one runner restored on a runner installed elsewhere (the
// entry version does not depend on RUNNER_TEMP or the workspace's location).
import { randomUUID } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

import { expect, test } from '@jest/globals'

import { idSegment } from '../src/core/keys.js'
import { LIBRARY_DIR } from '../src/storage/actions-cache.js'
import { ENTRY_VERSION } from '../src/storage/github/entry-format.js'
import { REPO_ROOT, runStep, type StepResult } from '../test-support/action-runner.js'
import { clientEnv } from '../test-support/hostile/plant.js'
import { useItgEnv } from '../test-support/itg-env.js'
import { pruneBuilder, UTILITY_IMAGE, userBuild } from '../test-support/user-build.js'

const itg = useItgEnv('flags')

/** A runner installed at `root`, laid out as GitHub's runner lays out its work directory. */
function runnerAt(root: string): { temp: string; workspace: string } {
  const r = { temp: join(itg.work, root, '_work/_temp'), workspace: join(itg.work, root, '_work/app/app') }
  mkdirSync(r.workspace, { recursive: true })
  return r
}

async function step(
  entry: 'main' | 'post',
  inputs: Record<string, string>,
  opts: { state?: Record<string, string>; runner?: { temp: string; workspace: string }; env?: Record<string, string> } = {}
): Promise<StepResult> {
  const runner = opts.runner ?? runnerAt('default')
  const env = { ...itg.service.env(), RUNNER_TEMP: runner.temp, GITHUB_WORKSPACE: runner.workspace, ...opts.env }
  return runStep(entry, { bundleDir: itg.bundleDir, inputs, env, cwd: runner.workspace, ...(opts.state ? { state: opts.state } : {}) })
}

const log = (r: StepResult): string => `${r.stdout}\n${r.stderr}`
function expectOk(r: StepResult): void {
  expect({ exit: r.exitCode, errors: r.errors, ...(r.exitCode === 0 ? {} : { log: log(r) }) }).toEqual({ exit: 0, errors: [] })
}
const mountsOf = (r: StepResult): { id: string; hit: boolean; 'matched-key': string; 'restored-bytes': number }[] =>
  JSON.parse(r.outputs.mounts ?? '[]') as { id: string; hit: boolean; 'matched-key': string; 'restored-bytes': number }[]

/** One mount of its own: inputs, a user build that writes into it, one that lists it, its entries. */
function scenario(name: string) {
  const run = randomUUID().slice(0, 8)
  const id = `flags-${name}-${run}`
  const prefix = `flags-${run}`
  const inputs: Record<string, string> = { mounts: `id=${id},target=/m`, 'key-prefix': prefix, 'utility-image': UTILITY_IMAGE, client: 'buildx' }
  const flag = `--mount=type=cache,id=${id},target=/m`
  return {
    id,
    inputs,
    write: (file: string): void => {
      const dockerfile = `FROM ${UTILITY_IMAGE}\nARG N\nRUN ${flag} echo ${file} > /m/${file} && mkdir /out\n`
      userBuild('buildx', dockerfile, join(itg.work, `w-${randomUUID()}`), { N: randomUUID() })
    },
    list: (): string[] => {
      const out = join(itg.work, `l-${randomUUID()}`)
      userBuild('buildx', `FROM ${UTILITY_IMAGE}\nARG N\nRUN ${flag} mkdir /out && ls /m > /out/ls\n`, out, { N: randomUUID() })
      return readFileSync(join(out, 'out/ls'), 'utf8').split('\n').filter(Boolean)
    },
    entries: () => itg.service.entries().filter(e => e.key.startsWith(`${prefix}-${idSegment(id)}-`))
  }
}
type Scenario = ReturnType<typeof scenario>

/** A first run that saves `file` in the mount, then an empty builder (the next runner). */
async function warm(s: Scenario, file: string): Promise<void> {
  const main = await step('main', s.inputs)
  expectOk(main)
  s.write(file)
  const post = await step('post', s.inputs, { state: main.state })
  expectOk(post)
  expect(s.entries()).toHaveLength(1)
  pruneBuilder('buildx')
}

test('lookup-only: outputs as if restored, nothing injected, and the post step saves nothing', async () => {
  const s = scenario('lookup')
  await warm(s, 'a')
  const [entry] = s.entries()
  const inputs = { ...s.inputs, 'lookup-only': 'true' }
  const main = await step('main', inputs)
  expectOk(main)
  expect({ cacheHit: main.outputs['cache-hit'], mounts: mountsOf(main) }).toEqual({
    cacheHit: 'true',
    mounts: [{ id: s.id, key: expect.any(String), 'matched-key': entry!.key, hit: true, 'restored-bytes': 0 }]
  })
  expect(main.stdout).toContain(`${s.id}: found ${entry!.key} (exact; lookup-only: nothing downloaded)`)
  expect(main.stdout).not.toMatch(/Injected/)
  // The builder's cache mount is as empty as after the prune.
  expect(s.list()).toEqual([])
  s.write('b')
  const post = await step('post', inputs, { state: main.state })
  expectOk(post)
  expect(post.stdout).toContain('lookup-only: the entries were only looked up and nothing was injected, so nothing is saved.')
  expect(s.entries().map(e => e.key)).toEqual([entry!.key])
})

test('fail-on-cache-miss: the step fails on a cold cache naming the mount and its keys, and passes on a warm one', async () => {
  const s = scenario('fail')
  const inputs = { ...s.inputs, 'fail-on-cache-miss': 'true' }
  const cold = await step('main', inputs)
  expect(cold.exitCode).toBe(1)
  const family = `${s.inputs['key-prefix']}-${idSegment(s.id)}-linux-amd64-`
  expect(cold.errors).toEqual([
    `No cache entry for 1 of 1 mount(s), failing as fail-on-cache-miss is set: ${s.id} (looked for ${family}nofiles-, ${family})`
  ])
  await warm(s, 'a')
  const hot = await step('main', inputs)
  expectOk(hot)
  expect(mountsOf(hot).map(m => m.hit)).toEqual([true])
  expect(s.list()).toEqual(['a'])
})

test('exact-match: an entry saved for other key files is not restored', async () => {
  const s = scenario('exact')
  await warm(s, 'a')
  // Now the mount is keyed on a file: the saved entry (no key files) is only a fallback.
  const runner = runnerAt('default')
  writeFileSync(join(runner.workspace, 'exact.lock'), randomUUID())
  const keyed = { ...s.inputs, 'key-files': 'exact.lock' }
  const fallback = await step('main', keyed)
  expectOk(fallback)
  expect({ hit: mountsOf(fallback)[0]?.hit, cacheHit: fallback.outputs['cache-hit'] }).toEqual({ hit: true, cacheHit: 'false' })
  pruneBuilder('buildx')
  const exact = await step('main', { ...keyed, 'exact-match': 'true' })
  expectOk(exact)
  expect(mountsOf(exact).map(m => [m.hit, m['matched-key']])).toEqual([[false, '']])
  expect(s.list()).toEqual([])
})

test('a utility image that cannot be pulled: inject and extract warn naming the image and the input, the step passes', async () => {
  const s = scenario('pull')
  await warm(s, 'a')
  const image = '127.0.0.1:5757/bmc-nonexistent/busybox:1'
  const inputs = { ...s.inputs, 'utility-image': image }
  const named = `the utility image ${image} could not be pulled (set the utility-image input to an image this builder can pull, e.g. a busybox mirror): `
  const main = await step('main', inputs)
  expectOk(main)
  expect(main.warnings).toEqual([
    expect.stringContaining(`Could not inject the restored caches into the builder; the build runs with empty cache mounts: ${named}`)
  ])
  expect(main.warnings[0]).toMatch(/failed to resolve source metadata for 127\.0\.0\.1:5757\/bmc-nonexistent\/busybox:1/)
  expect(mountsOf(main).map(m => m.hit)).toEqual([false])
  const post = await step('post', inputs, { state: main.state })
  expectOk(post)
  expect(post.warnings).toEqual([expect.stringContaining(`Could not extract the cache mounts from the builder; nothing is saved: ${named}`)])
  expect(s.entries()).toHaveLength(1)
})

// Both GitHub cache clients: the stream client (service v2's default) and the cache library (GHES, v1).
test.each(['stream', 'library'] as const)(
  '%s client: saved on one runner, restored on a runner installed elsewhere (other RUNNER_TEMP and workspace): the same entry version',
  async client => {
    const s = scenario(`machines-${client}`)
    const a = runnerAt(`runner-a-${client}`)
    const b = runnerAt(`elsewhere/runner-b-${client}`)
    const env = clientEnv(client)
    const main = await step('main', s.inputs, { runner: a, env })
    expectOk(main)
    s.write('from-a')
    expectOk(await step('post', s.inputs, { runner: a, state: main.state, env }))
    const [entry] = s.entries()
    expect(entry).toBeDefined()
    if (client === 'stream') {
      // One fixed version for the stream client's format: no path, no machine in it.
      expect(entry!.version).toBe(ENTRY_VERSION)
    } else {
      // The version the library derived: from the workspace-relative path, not from runner A's RUNNER_TEMP.
      type VersionFn = (paths: string[], compression?: string) => string
      const { getCacheVersion } = (await import(pathToFileURL(join(REPO_ROOT, 'node_modules/@actions/cache/lib/internal/cacheUtils.js')).href)) as {
        getCacheVersion: VersionFn
      }
      const archive = `${idSegment(s.id)}.tar`
      const versions = (path: string): string[] => [undefined, 'gzip', 'zstd-without-long', 'zstd'].map(c => getCacheVersion([path], c))
      expect(versions(`${LIBRARY_DIR}/${archive}`)).toContain(entry!.version)
      expect(versions(join(a.temp, 'buildkit-mount-cache', archive))).not.toContain(entry!.version)
    }

    pruneBuilder('buildx')
    const restored = await step('main', s.inputs, { runner: b, env })
    expectOk(restored)
    expect(mountsOf(restored).map(m => [m.hit, m['matched-key']])).toEqual([[true, entry!.key]])
    expect(s.list()).toEqual(['from-a'])
    // Nothing left where the archives passed through.
    for (const r of [a, b]) expect(existsSync(join(r.workspace, LIBRARY_DIR))).toBe(false)
  }
)
