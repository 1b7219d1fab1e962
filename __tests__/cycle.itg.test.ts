// Full cycle on the real engine and the real cache client: main (miss) → a
// user build fills three cache mounts → post saves → the builder is emptied →
// main (hit) → a user build finds every file exactly as written → post sees
// nothing changed. Once per client path.
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'

import { runStep, type StepResult } from '../test-support/action-runner.js'
import { useItgEnv } from '../test-support/itg-env.js'
import {
  clientPathDir,
  listingScript,
  normalizeListing,
  pruneBuilder,
  TEST_PROFILE,
  UTILITY_IMAGE,
  userBuild,
  type ClientName
} from '../test-support/user-build.js'

const itg = useItgEnv('cycle')

const LONG = 'L'.repeat(120)

/** The user's build stage: one RUN with the three cache mounts, running `script` (busybox sh). */
function userDockerfile(ids: string[], script: string): string {
  const [a, b, c] = ids
  return `FROM ${UTILITY_IMAGE}
ARG RUN_ID
RUN --mount=type=cache,id=${a},target=/cache/a,uid=1000,gid=1000,mode=0750 \\
    --mount=type=cache,id=${b},target=/cache/b \\
    --mount=type=cache,id=${c},target=/cache/c,gid=2000,mode=0775,sharing=locked <<'EOS'
set -eu
${script}
mkdir -p /out
${listingScript('/cache/a', '/out/a')}
${listingScript('/cache/b', '/out/b')}
${listingScript('/cache/c', '/out/c')}
EOS
`
}

/** Writes a tree with every kind of thing the cache must keep into /cache/a, /cache/b, /cache/c. */
function writerDockerfile(ids: string[]): string {
  return userDockerfile(
    ids,
    `cd /cache/a
printf 'hello\\n' > plain.txt && chown 1000:1000 plain.txt && chmod 0640 plain.txt
head -c 200000 /dev/urandom > random.bin && chown 1001:1002 random.bin
ln plain.txt hardlink.txt
ln -s plain.txt symlink
ln -s /does/not/exist dangling
mkdir 'empty dir' && chmod 0700 'empty dir'
echo long > ${LONG}
echo unicode > 'ünï cödé ✓ with spaces.txt'
: > empty-file && chmod 0000 empty-file
touch -t 202001020304.05 plain.txt random.bin ${LONG}
cd /cache/b
mkdir -p deep/a/b/c && echo deep > deep/a/b/c/file && chown -R 1234:5678 deep && chmod 2755 deep/a
touch -t 201901010000.00 deep/a/b/c/file deep/a/b/c
mkdir -p links/sub big && echo t > links/sub/target && ln links/sub/target links/sub/hard && ln -s target links/sub/soft
chown -h 4321:8765 links/sub/soft && chown 300000:300001 links/sub/target && chown 400000:400001 big
touch -h -t 201701010000.00 links/sub/soft && touch -t 201801010000.00 links/sub links big
cd /cache/c
i=0; while [ $i -lt 50 ]; do echo "$i" > "f$i"; i=$((i+1)); done`
  )
}

/** Only lists the three mounts. */
function readerDockerfile(ids: string[]): string {
  return userDockerfile(ids, '')
}

function listings(dir: string): Record<string, string[]> {
  return Object.fromEntries(['a', 'b', 'c'].map(m => [m, normalizeListing(readFileSync(join(dir, 'out', m), 'utf8'))]))
}

// auto = the stream this builder allows (loopback, or a docker-container builder's gateway);
// export = the fallback through the build's context and exporter.
describe.each(
  [
    ['buildx', 'auto'],
    ['docker', 'auto'],
    ['buildx', 'export']
  ].filter(([client]) => client === 'buildx' || TEST_PROFILE.classicClient) as [ClientName, string][]
)('full cycle through %s, extract via %s', (client, extractVia) => {
  const run = randomUUID().slice(0, 8)
  const ids = ['a', 'b', 'c'].map(m => `bmc-cycle-${client}-${extractVia}-${run}-${m}`)
  const mounts = [
    `id=${ids[0]},target=/cache/a,uid=1000,gid=1000,mode=0750`,
    `id=${ids[1]},target=/cache/b`,
    `id=${ids[2]},target=/cache/c,gid=2000,mode=0775,sharing=locked`
  ].join('\n')
  let path: ReturnType<typeof clientPathDir>
  let env: NodeJS.ProcessEnv
  const label = `${client}-${extractVia}`
  const workspace = (): string => join(itg.work, `ws-${label}`)
  const inputs = {
    mounts,
    'key-files': 'Dockerfile',
    'key-prefix': `cycle-${run}`,
    'utility-image': UTILITY_IMAGE,
    client,
    'extract-via': extractVia
  }

  beforeAll(() => {
    path = clientPathDir(client)
    spawnSync('mkdir', ['-p', workspace()])
    writeFileSync(join(workspace(), 'Dockerfile'), writerDockerfile(ids))
    env = {
      ...itg.service.env(),
      PATH: `${path.dir}:${process.env.PATH}`,
      RUNNER_TEMP: join(itg.work, `temp-${label}`),
      GITHUB_WORKSPACE: workspace()
    }
  })
  afterAll(() => path?.cleanup())

  const step = async (entry: 'main' | 'post', state?: Record<string, string>): Promise<StepResult> => {
    const r = await runStep(entry, { bundleDir: itg.bundleDir, inputs, env, cwd: workspace(), ...(state ? { state } : {}) })
    if (r.exitCode !== 0 || r.errors.length > 0) throw new Error(`${entry} failed:\n${r.stdout}\n${r.stderr}`)
    return r
  }

  test('miss → build → save → fresh builder → restore → every file identical → unchanged', async () => {
    const first = await step('main')
    expect(first.outputs['cache-hit']).toBe('false')
    expect(first.warnings).toEqual([])

    userBuild(client, writerDockerfile(ids), join(itg.work, `written-${label}`), { RUN_ID: run })
    const written = listings(join(itg.work, `written-${label}`))
    expect(written.a).toEqual(expect.arrayContaining([expect.stringMatching(/^\.\/plain\.txt\|regular file\|6\|1000\|1000\|640\|1577934245\|2\|/)]))

    const saved = await step('post', first.state)
    expect(saved.warnings).toEqual([])
    expect(saved.stdout).toContain(extractVia === 'export' ? '(build exporter)' : `(${TEST_PROFILE.streamLabel}`)
    expect(
      itg.service
        .entries()
        .map(e => e.key)
        .filter(k => k.startsWith(`cycle-${run}-`))
    ).toHaveLength(3)

    pruneBuilder(client)

    const second = await step('main')
    expect(second.outputs['cache-hit']).toBe('true')
    expect(second.warnings).toEqual([])
    expect(second.stdout).toContain(extractVia === 'export' ? '(build context)' : `(${TEST_PROFILE.streamLabel}`)
    const report = JSON.parse(second.outputs.mounts ?? '[]') as { hit: boolean; 'restored-bytes': number }[]
    expect(report.map(m => m.hit)).toEqual([true, true, true])
    expect(report[0]?.['restored-bytes']).toBeGreaterThan(200000)

    userBuild(client, readerDockerfile(ids), join(itg.work, `read-${label}`), { RUN_ID: `${run}-read` })
    expect(listings(join(itg.work, `read-${label}`))).toEqual(written)

    const unchanged = await step('post', second.state)
    expect(unchanged.warnings).toEqual([])
    // Found unchanged in the builder by their manifests: nothing was archived or read.
    expect(unchanged.stdout.match(/unchanged since restore .*its manifest is the one inject left/g)).toHaveLength(3)
    expect(unchanged.stdout).toContain('Extracted 0 mount(s)')
    expect(itg.service.entries().filter(e => e.key.startsWith(`cycle-${run}-`))).toHaveLength(3)
  })
})
