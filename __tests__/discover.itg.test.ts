// Dockerfile discovery end to end: no `mounts` input, three cache mounts with
// different uid/gid/mode, an id built from TARGETARCH, a target from a build
// arg and a cache namespace. If discovery got any identity option wrong, the
// user's second build would see an empty mount.
import { randomUUID } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { expect, test } from '@jest/globals'

import { runStep, type StepResult } from '../test-support/action-runner.js'
import { useItgEnv } from '../test-support/itg-env.js'
import { pruneBuilder, UTILITY_IMAGE, userBuild } from '../test-support/user-build.js'

const itg = useItgEnv('disc')

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
  writeFileSync(join(itg.workspace, 'Dockerfile'), dockerfile(write))
  const buildArgs = { BASE: '/srv', BUILDKIT_CACHE_MOUNT_NS: ns }
  const inputs = { 'build-args': 'BASE=/srv\nBUILDKIT_CACHE_MOUNT_NS=' + ns, 'key-prefix': `disc-${run}`, 'utility-image': UTILITY_IMAGE }
  const env = { ...itg.service.env(), RUNNER_TEMP: join(itg.work, 'temp'), GITHUB_WORKSPACE: itg.workspace }
  const step = async (entry: 'main' | 'post', state?: Record<string, string>): Promise<StepResult> => {
    const r = await runStep(entry, { bundleDir: itg.bundleDir, inputs, env, cwd: itg.workspace, ...(state ? { state } : {}) })
    if (r.exitCode !== 0 || r.errors.length > 0) throw new Error(`${entry} failed:\n${r.stdout}\n${r.stderr}`)
    return r
  }

  const first = await step('main')
  // The table of discovered mounts, before restoring.
  expect(first.stdout).toMatch(new RegExp(`pkgs-${run}-amd64\\s+/srv/pkgs\\s+uid=1000,gid=1000,mode=0700`))
  expect(first.stdout).toMatch(new RegExp(`/home/app/.cache/go-build-${run}\\s+/home/app/.cache/go-build-${run}\\s+uid=2000,gid=3000`))
  expect(first.stdout).toMatch(new RegExp(`tools-${run}\\s+/opt/tools\\s+mode=0775,sharing=locked`))
  userBuild('buildx', dockerfile(write), join(itg.work, 'w'), buildArgs)
  const written = readFileSync(join(itg.work, 'w/out/ls'), 'utf8')
  await step('post', first.state)
  expect(itg.service.entries().filter(e => e.key.startsWith(`disc-${run}-`))).toHaveLength(3)

  pruneBuilder('buildx')
  const second = await step('main')
  expect(second.outputs['cache-hit']).toBe('true')
  writeFileSync(join(itg.workspace, 'Dockerfile.read'), dockerfile(read))
  userBuild('buildx', dockerfile(read), join(itg.work, 'r'), buildArgs)
  expect(readFileSync(join(itg.work, 'r/out/cat'), 'utf8')).toBe('pkg\ngo\ntool\n')
  expect(readFileSync(join(itg.work, 'r/out/ls'), 'utf8')).toBe(written)
})
