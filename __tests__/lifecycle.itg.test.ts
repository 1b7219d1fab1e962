// Cache lifecycle on the real engine and cache client (buildx path): rolling
// keys, per-mount key files, skip-unchanged, the save policy, the restore/ and
// save/ sub-actions, ACTIONS_CACHE_MODE and the job summary.
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { expect, test } from '@jest/globals'

import { runStep, type StepResult } from '../test-support/action-runner.js'
import { useItgEnv } from '../test-support/itg-env.js'
import { pruneBuilder, TEST_PROFILE, UTILITY_IMAGE, userBuild } from '../test-support/user-build.js'

const itg = useItgEnv('life')

/** A unique pair of mounts: `tools` keyed on tools.lock only, `pkgs` on the step's key files. */
function scenario() {
  const run = randomUUID().slice(0, 8)
  const ids = { tools: `life-tools-${run}`, pkgs: `life-pkgs-${run}` }
  const mounts = `id=${ids.tools},target=/tools,key-files=tools.lock\nid=${ids.pkgs},target=/pkgs,uid=1000`
  const inputs: Record<string, string> = {
    mounts,
    'key-files': 'pkgs.lock',
    'key-prefix': `life-${run}`,
    'utility-image': UTILITY_IMAGE,
    client: 'buildx'
  }
  /** A user build that writes `value` into the mounts it is told to. */
  const write = (files: { tools?: string; pkgs?: string }): void => {
    const lines = [
      files.tools === undefined ? 'true' : `echo '${files.tools}' > /tools/version`,
      files.pkgs === undefined ? 'true' : `echo '${files.pkgs}' > /pkgs/p-${files.pkgs} && chown 1000 /pkgs/p-${files.pkgs}`
    ]
    userBuild(
      'buildx',
      `FROM ${UTILITY_IMAGE}\nARG N\nRUN --mount=type=cache,id=${ids.tools},target=/tools --mount=type=cache,id=${ids.pkgs},target=/pkgs,uid=1000 ${lines.join(' && ')} && mkdir /out && ls /tools /pkgs > /out/ls\n`,
      join(itg.work, `out-${randomUUID()}`),
      { N: randomUUID() }
    )
  }
  const keys = (): string[] =>
    itg.service
      .entries()
      .map(e => e.key)
      .filter(k => k.startsWith(`life-${run}-`))
      .sort()
  return { run, ids, inputs, write, keys }
}

async function step(
  entry: 'main' | 'post' | 'restore-only' | 'save-only',
  inputs: Record<string, string>,
  opts: { state?: Record<string, string>; env?: NodeJS.ProcessEnv } = {}
): Promise<StepResult> {
  const env = {
    ...itg.service.env(),
    RUNNER_TEMP: join(itg.work, 'temp'),
    GITHUB_WORKSPACE: itg.workspace,
    GITHUB_STEP_SUMMARY: itg.summaryFile,
    ...opts.env
  }
  const r = await runStep(entry, { bundleDir: itg.bundleDir, inputs, env, cwd: itg.workspace, ...(opts.state ? { state: opts.state } : {}) })
  if (r.exitCode !== 0 || r.errors.length > 0) throw new Error(`${entry} failed:\n${r.stdout}\n${r.stderr}`)
  return r
}

const hits = (r: StepResult): boolean[] => (JSON.parse(r.outputs.mounts ?? '[]') as { hit: boolean }[]).map(m => m.hit)

test('rolling keys, per-mount key files, skip unchanged, summary', async () => {
  const s = scenario()
  writeFileSync(join(itg.workspace, 'tools.lock'), 'tools v1')
  writeFileSync(join(itg.workspace, 'pkgs.lock'), 'pkgs v1')

  const a = await step('main', s.inputs)
  s.write({ tools: 'v1', pkgs: 'one' })
  await step('post', s.inputs, { state: a.state })
  expect(s.keys()).toHaveLength(2)
  expect(readFileSync(itg.summaryFile, 'utf8')).toContain(s.ids.pkgs)

  // The package lock changes: tools still hit exactly, packages fall back to the newest entry of the mount.
  writeFileSync(join(itg.workspace, 'pkgs.lock'), 'pkgs v2')
  pruneBuilder('buildx')
  const b = await step('main', s.inputs)
  expect(hits(b)).toEqual([true, true])
  expect(b.outputs['cache-hit']).toBe('false')
  s.write({ pkgs: 'two' })
  const saved = await step('post', s.inputs, { state: b.state })
  expect(saved.stdout).toMatch(new RegExp(`${s.ids.tools}: unchanged since restore`))
  // The changed mount gets a new key (new files hash and new content); the old entry stays.
  const keys = s.keys()
  expect(keys).toHaveLength(3)
  expect(keys.filter(k => k.includes(s.ids.pkgs.replace(/[^A-Za-z0-9._-]/g, '_')))).toHaveLength(2)

  // Next run with the same lock files: an exact hit for both, with both packages in the mount.
  pruneBuilder('buildx')
  const c = await step('main', s.inputs)
  expect(c.outputs['cache-hit']).toBe('true')
  const out = join(itg.work, 'verify')
  userBuild(
    'buildx',
    `FROM ${UTILITY_IMAGE}\nARG N\nRUN --mount=type=cache,id=${s.ids.pkgs},target=/pkgs,uid=1000 mkdir /out && ls /pkgs > /out/ls\n`,
    out,
    { N: randomUUID() }
  )
  expect(readFileSync(join(out, 'out/ls'), 'utf8').split('\n').filter(Boolean)).toEqual(['p-one', 'p-two'])
})

test('save: false restores but never saves', async () => {
  const s = scenario()
  const a = await step('main', { ...s.inputs, save: 'false' })
  s.write({ tools: 'x', pkgs: 'x' })
  const post = await step('post', { ...s.inputs, save: 'false' }, { state: a.state })
  expect(post.stdout).toMatch(/save is false/)
  expect(s.keys()).toEqual([])
})

test('a read-only cache (ACTIONS_CACHE_MODE=read) restores and does not try to save', async () => {
  const s = scenario()
  const env = { ACTIONS_CACHE_MODE: 'read' }
  const a = await step('main', s.inputs, { env })
  s.write({ tools: 'x', pkgs: 'x' })
  const before = itg.service.requests.length
  const post = await step('post', s.inputs, { state: a.state, env })
  expect(post.stdout).toMatch(/::notice::.*may not write to the cache/)
  expect(s.keys()).toEqual([])
  expect(itg.service.requests.length).toBe(before)
})

test('restore/ and save/ sub-actions hand the frozen keys over through the state output', async () => {
  const s = scenario()
  const r1 = await step('restore-only', s.inputs)
  expect(r1.outputs.state).toBeTruthy()
  s.write({ tools: 'sub', pkgs: 'sub' })
  await step('save-only', { state: r1.outputs.state ?? '' })
  expect(s.keys()).toHaveLength(2)

  pruneBuilder('buildx')
  const r2 = await step('restore-only', s.inputs)
  expect(r2.outputs['cache-hit']).toBe('true')
  itg.service.clearRequests()
  const again = await step('save-only', { state: r2.outputs.state ?? '' })
  expect(again.stdout.match(/unchanged since restore/g)).toHaveLength(2)
  // Unchanged means no upload at all: not a single request reached the itg.service.
  expect(itg.service.requests).toEqual([])

  // Without state, save/ plans from its own inputs; identical content maps to the existing keys.
  const plain = await step('save-only', s.inputs)
  expect(plain.warnings).toEqual([])
  expect(s.keys()).toHaveLength(2)
})

test('bad input fails the main step with a message naming the input', async () => {
  const r = await runStep('main', {
    bundleDir: itg.bundleDir,
    inputs: { mounts: 'id=a b,target=/x' },
    env: { ...itg.service.env(), RUNNER_TEMP: join(itg.work, 'temp') },
    cwd: itg.workspace
  })
  expect(r.exitCode).toBe(1)
  expect(r.errors.join('\n')).toMatch(/Input "mounts line 1": id "a b"/)
})

test('exclude leaves paths out of the saved mount; an oversize mount is skipped, the others saved', async () => {
  const run = randomUUID().slice(0, 8)
  const ids = { cargo: `life-cargo-${run}`, big: `life-big-${run}` }
  const inputs = {
    mounts: `id=${ids.cargo},target=/cargo,exclude=registry/src;git/checkouts\nid=${ids.big},target=/big,max-size=100k`,
    'key-prefix': `life-${run}`,
    'utility-image': UTILITY_IMAGE,
    client: 'buildx'
  }
  const a = await step('main', inputs)
  userBuild(
    'buildx',
    `FROM ${UTILITY_IMAGE}\nARG N\nRUN --mount=type=cache,id=${ids.cargo},target=/cargo --mount=type=cache,id=${ids.big},target=/big mkdir -p /cargo/registry/src/crate /cargo/registry/cache /cargo/git/checkouts && echo src > /cargo/registry/src/crate/lib.rs && echo crate > /cargo/registry/cache/c.crate && echo co > /cargo/git/checkouts/x && head -c 300000 /dev/urandom > /big/blob\n`,
    join(itg.work, `out-${run}`),
    { N: run }
  )
  const post = await step('post', inputs, { state: a.state })
  expect(post.warnings.join('\n')).toMatch(new RegExp(`${ids.big}: 293.0 KiB is over max-size 100.0 KiB, not saved`))
  const keys = itg.service
    .entries()
    .map(e => e.key)
    .filter(k => k.startsWith(`life-${run}-`))
  expect(keys).toHaveLength(1)

  pruneBuilder('buildx')
  await step('main', inputs)
  const out = join(itg.work, `verify-${run}`)
  userBuild(
    'buildx',
    `FROM ${UTILITY_IMAGE}\nARG N\nRUN --mount=type=cache,id=${ids.cargo},target=/cargo --mount=type=cache,id=${ids.big},target=/big mkdir /out && cd /cargo && find . | sort > /out/cargo && ls -A /big > /out/big\n`,
    out,
    { N: `${run}-v` }
  )
  expect(readFileSync(join(out, 'out/cargo'), 'utf8').split('\n').filter(Boolean)).toEqual([
    '.',
    './git',
    './registry',
    './registry/cache',
    './registry/cache/c.crate'
  ])
  expect(readFileSync(join(out, 'out/big'), 'utf8')).toBe('')
})

test('the save sub-action under if: always() keeps what a failed build downloaded', async () => {
  const s = scenario()
  const r = await step('restore-only', s.inputs)
  expect(() =>
    userBuild(
      'buildx',
      `FROM ${UTILITY_IMAGE}\nARG N\nRUN --mount=type=cache,id=${s.ids.pkgs},target=/pkgs,uid=1000 echo downloaded > /pkgs/dep.tgz && echo "compile error" && exit 1\n`,
      join(itg.work, `fail-${s.run}`),
      { N: s.run }
    )
  ).toThrow(/user build failed/)
  await step('save-only', { state: r.outputs.state ?? '' })
  expect(s.keys()).toHaveLength(1)
  expect(s.keys()[0]).toContain(s.ids.pkgs)
})

/**
 * How the stream is made not to work on the builder under test: a docker wrapper first on PATH that
 * passes every command through but one.
 *  - docker driver (and the classic client): the build asking for host networking is refused, as a
 *    docker-container builder without the network.host entitlement refuses it;
 *  - docker-container builder on a bridge: the builder container's gateway reads 127.0.0.1, an address
 *    of the runner that the builder's network does not reach (as behind a firewall), so the listener
 *    binds there and the RUN's nc cannot connect.
 */
function brokenStream(real: string): { fault: string; script: string; notAvailable: RegExp } {
  if (TEST_PROFILE.name === 'container') {
    return {
      fault: 'the gateway stream cannot connect',
      script: `#!/bin/sh\nfor last in "$@"; do :; done\nif [ "$1" = inspect ] && [ "\${last#buildx_buildkit_}" != "$last" ]; then\n  out=$(${real} "$@") || exit $?\n  printf '%s\\n' "$out" | sed 's/|.*/|127.0.0.1 /'\n  exit 0\nfi\nexec ${real} "$@"\n`,
      notAvailable:
        /^Gateway stream at 127\.0\.0\.1 not available \(.+\); (injecting|extracting) through the build(?:'s exporter| context) instead\.$/
    }
  }
  return {
    fault: 'host networking is refused',
    script: `#!/bin/sh\nfor a in "$@"; do [ "$a" = "--network=host" ] && { echo 'ERROR: failed to solve: granting entitlement network.host is not allowed by build daemon configuration' >&2; exit 1; }; done\nexec ${real} "$@"\n`,
    notAvailable:
      /^Loopback stream not available \(.*network\.host is not allowed.*\); (injecting|extracting) through the build(?:'s exporter| context) instead\.$/
  }
}

/** The fallback lines of a step's log: "<route> not available (<reason>); <phase>ing through <fallback> instead." */
const fallbackLines = (r: StepResult): string[] => r.stdout.split('\n').filter(l => l.includes(' not available ('))

const streamFault = brokenStream(spawnSync('sh', ['-c', 'command -v docker'], { encoding: 'utf8' }).stdout.trim())

test(`inject and extract fall back once to the build context and exporter, and say so in one short line, when ${streamFault.fault}`, async () => {
  const bin = join(itg.work, 'broken-stream')
  mkdirSync(bin, { recursive: true })
  writeFileSync(join(bin, 'docker'), streamFault.script, { mode: 0o755 })
  const s = scenario()
  const env = { PATH: `${bin}:${process.env.PATH}` }
  const a = await step('main', s.inputs, { env })
  s.write({ tools: 'fb', pkgs: 'fb' })
  const post = await step('post', s.inputs, { state: a.state, env })
  // One line, short: the route, the reason cut to one line, the fallback (never the generated RUN script).
  const extractLines = fallbackLines(post)
  expect(extractLines).toEqual([expect.stringMatching(streamFault.notAvailable)])
  expect(extractLines[0]).toMatch(/extracting through the build's exporter instead/)
  expect(extractLines[0]!.length).toBeLessThan(320)
  expect(post.stdout).toContain('(build exporter)')
  expect(s.keys()).toHaveLength(2)

  // A fresh builder: inject falls back to the build context, and post goes straight to the exporter.
  pruneBuilder('buildx')
  const b = await step('main', s.inputs, { env })
  expect(hits(b)).toEqual([true, true])
  const injectLines = fallbackLines(b)
  expect(injectLines).toEqual([expect.stringMatching(streamFault.notAvailable)])
  expect(injectLines[0]).toMatch(/injecting through the build context instead/)
  expect(injectLines[0]!.length).toBeLessThan(320)
  expect(b.stdout).toContain('(build context)')
  const out = join(itg.work, `fb-read-${s.run}`)
  userBuild(
    'buildx',
    `FROM ${UTILITY_IMAGE}\nARG N\nRUN --mount=type=cache,id=${s.ids.tools},target=/tools --mount=type=cache,id=${s.ids.pkgs},target=/pkgs,uid=1000 mkdir /out && cat /tools/version /pkgs/p-fb > /out/read && stat -c '%u' /pkgs/p-fb >> /out/read\n`,
    out,
    { N: s.run }
  )
  expect(readFileSync(join(out, 'out/read'), 'utf8')).toBe('fb\nfb\n1000\n')
  const again = await step('post', s.inputs, { state: b.state, env })
  expect(fallbackLines(again)).toEqual([])
  expect(again.stdout).toContain('(build exporter; 2 unchanged since inject, not read)')
  expect(s.keys()).toHaveLength(2)
})
