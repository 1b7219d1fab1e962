// Dockerfile discovery end to end: no `mounts` input, three cache mounts with
// different uid/gid/mode, an id built from TARGETARCH, a target from a build
// arg and a cache namespace. If discovery got any identity option wrong, the
// user's second build would see an empty mount.
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterAll, beforeAll, expect, test } from '@jest/globals'

import { bundleAction, REPO_ROOT, runStep, type StepResult } from '../test-support/action-runner.js'
import { startCacheService, type CacheService } from '../test-support/cache-service/server.js'
import { pruneBuilder, UTILITY_IMAGE, userBuild } from '../test-support/user-build.js'

let bundle: ReturnType<typeof bundleAction>
let service: CacheService
const work = mkdtempSync(join(tmpdir(), 'bmc-disc-'))
const workspace = join(work, 'ws')

beforeAll(async () => {
  const engine = spawnSync('bash', [join(REPO_ROOT, 'scripts/engine.sh'), 'start'], { encoding: 'utf8' })
  if (engine.status !== 0) throw new Error(`engine.sh start failed:\n${engine.stderr}`)
  bundle = bundleAction()
  service = await startCacheService({ dataDir: join(work, 'cache-data') })
  mkdirSync(workspace, { recursive: true })
})

afterAll(async () => {
  await service?.close()
  bundle?.cleanup()
  rmSync(work, { recursive: true, force: true })
})

test('mounts found in the Dockerfile are restored into the caches the build really uses', async () => {
  const run = randomUUID().slice(0, 8)
  const ns = `ns${run}`
  const dockerfile = (body: string): string => `ARG TOOLS=/opt/tools
FROM ${UTILITY_IMAGE} AS base
ARG TOOLS
ARG TARGETARCH
ARG BASE
ENV GOCACHE=/home/app/.cache/go-build
RUN --mount=type=cache,id=pkgs-${run}-$TARGETARCH,target=\${BASE}/pkgs,uid=1000,gid=1000,mode=0700 \\
    --mount=type=cache,target=$GOCACHE-${run},uid=2000,gid=3000 \\
    --mount=type=tmpfs,target=/scratch \\
    --mount=type=cache,id=tools-${run},target=\${TOOLS},mode=0775,sharing=locked \\
    ${body}
`
  const write = `mkdir -p /out && echo pkg > \${BASE}/pkgs/p && chown 1000:1000 \${BASE}/pkgs/p && echo go > $GOCACHE-${run}/g && echo tool > /opt/tools/t && ls -ln \${BASE}/pkgs $GOCACHE-${run} /opt/tools > /out/ls`
  const read = `mkdir -p /out && ls -ln \${BASE}/pkgs $GOCACHE-${run} /opt/tools > /out/ls && cat \${BASE}/pkgs/p $GOCACHE-${run}/g /opt/tools/t > /out/cat`
  writeFileSync(join(workspace, 'Dockerfile'), dockerfile(write))
  const buildArgs = { BASE: '/srv', BUILDKIT_CACHE_MOUNT_NS: ns }
  const inputs = { 'build-args': 'BASE=/srv\nBUILDKIT_CACHE_MOUNT_NS=' + ns, 'key-prefix': `disc-${run}`, 'utility-image': UTILITY_IMAGE }
  const env = { ...service.env(), RUNNER_TEMP: join(work, 'temp'), GITHUB_WORKSPACE: workspace }
  const step = async (entry: 'main' | 'post', state?: Record<string, string>): Promise<StepResult> => {
    const r = await runStep(entry, { bundleDir: bundle.dir, inputs, env, cwd: workspace, ...(state ? { state } : {}) })
    if (r.exitCode !== 0 || r.errors.length > 0) throw new Error(`${entry} failed:\n${r.stdout}\n${r.stderr}`)
    return r
  }

  const first = await step('main')
  // The table of discovered mounts, before restoring.
  expect(first.stdout).toMatch(new RegExp(`pkgs-${run}-amd64\\s+/srv/pkgs\\s+uid=1000,gid=1000,mode=0700`))
  expect(first.stdout).toMatch(new RegExp(`/home/app/.cache/go-build-${run}\\s+/home/app/.cache/go-build-${run}\\s+uid=2000,gid=3000`))
  expect(first.stdout).toMatch(new RegExp(`tools-${run}\\s+/opt/tools\\s+mode=0775,sharing=locked`))
  userBuild('buildx', dockerfile(write), join(work, 'w'), buildArgs)
  const written = readFileSync(join(work, 'w/out/ls'), 'utf8')
  await step('post', first.state)
  expect(service.entries().filter(e => e.key.startsWith(`disc-${run}-`))).toHaveLength(3)

  pruneBuilder('buildx')
  const second = await step('main')
  expect(second.outputs['cache-hit']).toBe('true')
  writeFileSync(join(workspace, 'Dockerfile.read'), dockerfile(read))
  userBuild('buildx', dockerfile(read), join(work, 'r'), buildArgs)
  expect(readFileSync(join(work, 'r/out/cat'), 'utf8')).toBe('pkg\ngo\ntool\n')
  expect(readFileSync(join(work, 'r/out/ls'), 'utf8')).toBe(written)
})
