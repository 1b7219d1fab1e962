// Delta saves on the real engine and the real cache client: a full save, then
// chains of deltas carrying every kind of change (add, change, remove, rename,
// chmod, chown, hardlinks, symlinks, a directory replaced by a file), each
// restored into an emptied builder bit for bit; compaction; a chain whose
// middle is corrupt; two jobs continuing one chain at the same time.
import { randomUUID } from 'node:crypto'
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'

import { runStep, type StepResult } from '../test-support/action-runner.js'
import { DELTA_META_NAME, deltaMetaText } from '../src/archive/delta.js'
import { makeTar } from '../test-support/fakes/tar.js'
import { corruptBlob, plantBytes } from '../test-support/hostile/plant.js'
import { useItgEnv } from '../test-support/itg-env.js'
import { clientPathDir, listingScript, normalizeListing, pruneBuilder, TEST_PROFILE, UTILITY_IMAGE, userBuild } from '../test-support/user-build.js'

const itg = useItgEnv('delta')
/** Cases about the cache side, the same on every builder: run once, on the classic profile's docker driver. */
const cacheSide = TEST_PROFILE.classicClient ? test : test.skip

/** What each user build does to the mount before listing it (busybox sh, in /cache/m). */
const STEPS: Record<string, string> = {
  base: `mkdir -p pkgs/a pkgs/b 'old dir/sub' && chown 1000:1000 pkgs
i=0; while [ $i -lt 40 ]; do head -c 4000 /dev/urandom > pkgs/a/f$i; i=$((i+1)); done
head -c 300000 /dev/urandom > pkgs/b/big.bin && chown 1001:1002 pkgs/b/big.bin && chmod 0640 pkgs/b/big.bin
echo keep > keep.txt && ln keep.txt keep-link.txt && ln -s keep.txt soft && ln -s /nowhere dangling
echo gone > 'old dir/sub/gone.txt' && echo moved > moved-from.txt && echo retype > retype
touch -t 202001020304.05 keep.txt pkgs/b/big.bin && touch -h -t 201901010000.00 soft`,
  one: `echo added > pkgs/a/new.txt && chown 2000:2001 pkgs/a/new.txt
echo changed >> pkgs/a/f3 && rm pkgs/a/f4 && mv moved-from.txt moved-to.txt
chmod 0600 pkgs/a/f5 && chown 1234:5678 pkgs/a/f6 && ln pkgs/a/f7 pkgs/a/f7-link
rm soft && ln -s keep-link.txt soft && chown -h 300000:300001 soft && touch -h -t 201801010000.00 soft
mkdir -p fresh/deep/er && echo x > fresh/deep/er/y && touch -t 201701010000.00 fresh/deep`,
  two: `rm -r 'old dir' && rm retype && mkdir retype && echo inside > retype/file
rm keep.txt && echo rewritten > pkgs/a/f8 && touch -t 202101010000.00 pkgs/a/f8 pkgs/a
ln pkgs/a/new.txt new-hard && chmod 0700 fresh`,
  three: `echo three > pkgs/a/three.txt && rm pkgs/a/f9`,
  fourA: `echo job-a > pkgs/a/job-a.txt`,
  big: `head -c 200000 /dev/urandom > pkgs/b/big2.bin`,
  bigger: `head -c 400000 /dev/urandom > pkgs/b/big3.bin`
}

function dockerfile(id: string): string {
  const cases = Object.entries(STEPS)
    .map(([name, script]) => `  ${name}) ${script.split('\n').join('\n')} ;;`)
    .join('\n')
  return `FROM ${UTILITY_IMAGE}
ARG STEP
ARG RUN_ID
RUN --mount=type=cache,id=${id},target=/cache/m <<'EOS'
set -eu
cd /cache/m
case "$STEP" in
${cases}
  read) ;;
esac
mkdir -p /out
${listingScript('/cache/m', '/out/m')}
EOS
`
}

describe('delta saves through buildx', () => {
  const run = randomUUID().slice(0, 8)
  const id = `bmc-delta-${run}`
  const prefix = `delta-${run}`
  let path: ReturnType<typeof clientPathDir>
  let env: NodeJS.ProcessEnv
  const workspace = join(itg.work, 'ws-delta')
  const inputs: Record<string, string> = {
    mounts: `id=${id},target=/cache/m`,
    'key-files': 'Dockerfile',
    'key-prefix': prefix,
    'utility-image': UTILITY_IMAGE,
    client: 'buildx'
  }
  let builds = 0

  beforeAll(() => {
    path = clientPathDir('buildx')
    mkdirSync(workspace, { recursive: true })
    writeFileSync(join(workspace, 'Dockerfile'), dockerfile(id))
    env = { ...itg.service.env(), PATH: `${path.dir}:${process.env.PATH}`, RUNNER_TEMP: join(itg.work, 'temp'), GITHUB_WORKSPACE: workspace }
  })
  afterAll(() => path?.cleanup())

  const step = async (entry: 'main' | 'post', state?: Record<string, string>, temp = 'temp'): Promise<StepResult> => {
    const r = await runStep(entry, {
      bundleDir: itg.bundleDir,
      inputs,
      env: { ...env, RUNNER_TEMP: join(itg.work, temp) },
      cwd: workspace,
      ...(state ? { state } : {})
    })
    if (r.exitCode !== 0 || r.errors.length > 0) throw new Error(`${entry} failed:\n${r.stdout}\n${r.stderr}`)
    return r
  }
  /** Runs the user's build with `stepName`, returns the mount's listing afterwards. */
  const build = (stepName: string): string[] => {
    const out = join(itg.work, `out-${++builds}`)
    userBuild('buildx', readFileSync(join(workspace, 'Dockerfile'), 'utf8'), out, { STEP: stepName, RUN_ID: `${run}-${builds}` })
    return normalizeListing(readFileSync(join(out, 'out', 'm'), 'utf8'))
  }
  const keys = (): string[] =>
    itg.service
      .entries()
      .map(e => e.key)
      .filter(k => k.startsWith(`${prefix}-`))
  /** A job on an emptied builder: restore, the user's build, save. */
  const job = async (stepName: string): Promise<{ main: StepResult; seen: string[]; after: string[]; post: StepResult }> => {
    pruneBuilder('buildx')
    const main = await step('main')
    const seen = build('read')
    const after = stepName === 'read' ? seen : build(stepName)
    const post = await step('post', main.state)
    return { main, seen, after, post }
  }

  let states: string[][] = []

  test('a full save, then deltas with every kind of change, each restored bit for bit', async () => {
    const first = await job('base')
    expect(first.seen).toHaveLength(1)
    expect(first.post.warnings).toEqual([])
    expect(keys()).toHaveLength(1)
    states = [first.after]

    for (const [n, name] of ['one', 'two', 'three'].entries()) {
      const j = await job(name)
      expect(j.main.warnings).toEqual([])
      // The tree the chain restores is the one the previous job left.
      expect(j.seen).toEqual(states.at(-1))
      expect(j.post.warnings).toEqual([])
      expect(j.post.stdout).toMatch(new RegExp(`saved ${prefix}-\\S+-d${n + 1}-[0-9a-f]{12} \\(delta ${n + 1} of ${prefix}-`))
      if (n > 0) expect(j.main.stdout).toContain(`+ ${n} delta(s)`)
      states.push(j.after)
    }
    expect(keys()).toHaveLength(4)

    // The last chain restores, and an unchanged job saves nothing.
    const unchanged = await job('read')
    expect(unchanged.seen).toEqual(states.at(-1))
    expect(unchanged.main.stdout).toContain('+ 3 delta(s)')
    expect(unchanged.post.stdout).toContain('unchanged since restore')
    expect(keys()).toHaveLength(4)
  })

  test('two jobs saving the same chain at once: one entry, and the next job restores it exactly', async () => {
    pruneBuilder('buildx')
    const a = await step('main', undefined, 'temp-a')
    // A second job that restored the same chain (its state and inject's listing), saving at the same moment.
    cpSync(join(itg.work, 'temp-a'), join(itg.work, 'temp-b'), { recursive: true })
    const after = build('fourA')
    const [postA, postB] = await Promise.all([step('post', a.state, 'temp-a'), step('post', a.state, 'temp-b')])
    expect(postA.warnings).toEqual([])
    expect(postB.warnings).toEqual([])
    expect(`${postA.stdout}${postB.stdout}`).toMatch(/\(delta 4 of /)
    expect(keys().filter(k => /-d4-[0-9a-f]{12}$/.test(k))).toHaveLength(1)
    const next = await job('read')
    expect(next.main.warnings).toEqual([])
    expect(next.seen).toEqual(after)
    states.push(after)
  })

  test('a corrupt delta in the middle: the chain before it is restored, with a warning', async () => {
    const d2 = keys().find(k => /-d2-[0-9a-f]{12}$/.test(k))
    expect(d2).toBeDefined()
    corruptBlob(itg.service, d2 as string)
    const j = await job('read')
    expect(j.main.warnings.join('\n')).toMatch(/delta chain .* ends early, restoring up to \S+-d1-/)
    expect(j.seen).toEqual(states[1])
  })

  test('a change over the share of the base: a full save (compaction) that deletes the chain it replaces', async () => {
    inputs['delete-superseded'] = 'true'
    inputs['github-token'] = itg.service.githubToken
    const before = keys()
    expect(before.length).toBeGreaterThan(4)
    const j = await job('big')
    expect(j.post.warnings).toEqual([])
    expect(j.post.stdout).not.toMatch(/\(delta \d+ of /)
    const saved = new RegExp(`saved (${prefix}-\\S+-[0-9a-f]{16}) \\(`).exec(j.post.stdout)?.[1]
    expect(saved).toBeDefined()
    // Deleted through the service's REST endpoint: the old base and every delta on it, other jobs' too.
    expect(j.post.stdout).toContain(`deleted ${before.length} superseded entries`)
    expect(keys()).toEqual([saved])
    const again = await job('read')
    expect(again.main.stdout).not.toContain('delta(s)')
    expect(again.seen).toEqual(j.after)
  })

  cacheSide('deleting without the permission: one warning, the new entry saved anyway', async () => {
    itg.service.setApi({ permission: 'read' })
    try {
      const j = await job('bigger')
      expect(j.post.warnings).toHaveLength(1)
      expect(j.post.warnings[0]).toMatch(/could not delete the entries it supersedes: .*actions: write/)
      expect(keys()).toHaveLength(2)
      const again = await job('read')
      expect(again.seen).toEqual(j.after)
    } finally {
      itg.service.setApi({ permission: 'write' })
    }
  })

  cacheSide('deltas: false saves a full entry for a small change', async () => {
    inputs.deltas = 'false'
    try {
      const j = await job('three')
      expect(j.post.warnings).toEqual([])
      expect(j.post.stdout).not.toMatch(/\(delta \d+ of /)
      expect(j.post.stdout).toMatch(new RegExp(`saved ${prefix}-\\S+-[0-9a-f]{16} \\(`))
    } finally {
      delete inputs.deltas
    }
  })

  cacheSide('through the cache library (GHES, or the stream client turned off): a chain saves and restores the same', async () => {
    env.BUILDKIT_MOUNT_CACHE_GITHUB_CLIENT = 'library'
    try {
      // The two clients keep their entries apart (docs/how-it-works.md): the library starts from a miss.
      const base = await job('base')
      expect(base.seen).toHaveLength(1)
      const j = await job('one')
      expect(j.seen).toEqual(base.after)
      expect(j.post.warnings).toEqual([])
      expect(j.post.stdout).toMatch(/\(delta 1 of /)
      const next = await job('read')
      expect(next.main.warnings).toEqual([])
      expect(next.main.stdout).toContain('+ 1 delta(s)')
      expect(next.seen).toEqual(j.after)
    } finally {
      delete env.BUILDKIT_MOUNT_CACHE_GITHUB_CLIENT
    }
  })

  cacheSide('a hostile delta planted on the newest base: the base alone is restored, with a warning', async () => {
    const clean = await job('read')
    const newest = new RegExp(`restored (${prefix}-\\S+) \\(exact, \\d`).exec(clean.main.stdout)?.[1] as string
    expect(newest).toMatch(/-[0-9a-f]{16}$/)
    const meta = deltaMetaText({ base: newest, chain: [newest], sequence: 1, deleted: [] })
    const hostile = await makeTar([
      { name: DELTA_META_NAME, type: 'file', mode: 0o644, body: meta },
      { name: 'pkgs/a/suid', type: 'file', mode: 0o4755, body: 'x' }
    ])
    await plantBytes({ service: itg.service, runnerTemp: join(itg.work, 'temp'), workspace }, id, `${newest}-d1-${'0'.repeat(12)}`, hostile)
    const j = await job('read')
    expect(j.main.warnings.join('\n')).toMatch(/the deltas of \S+ do not apply \(.*setuid.*\); restoring the base entry alone/)
    expect(j.seen).toEqual(clean.seen)
  })
})
