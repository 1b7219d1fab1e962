// The inputs of a docker/build-push-action workflow on the real engine and the real cache
// client, through the bundled steps: the Dockerfile found through `context: ./app` (none at
// the workspace root), `build-args` in build-push-action's syntax (a comment line, a bare KEY
// taking its value from the job's environment) expanding the mount id, and `key-files` as a
// comma list with one pattern that matches nothing (a warning naming it; the key still uses
// the other file). The restored files are compared with what the build wrote, byte for byte.
import { randomUUID } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { expect, test } from '@jest/globals'

import { runStep, type StepResult } from '../test-support/action-runner.js'
import { useItgEnv } from '../test-support/itg-env.js'
import { listingScript, pruneBuilder, UTILITY_IMAGE, userBuild } from '../test-support/user-build.js'

const itg = useItgEnv('inputs')

/** The app's Dockerfile: one cache mount whose id depends on the FLAVOUR build arg; `script` runs before the listing. */
function appDockerfile(run: string, script: string): string {
  return `FROM ${UTILITY_IMAGE}
ARG FLAVOUR=none
ARG RUN_ID
RUN --mount=type=cache,id=itg-inputs-${run}-$FLAVOUR,target=/deps,uid=1000 <<'EOS'
set -eu
${script}
mkdir -p /out
${listingScript('/deps', '/out/deps')}
EOS
`
}

const WRITE = `cd /deps
printf 'lock v1\\n' > lock.txt && chown 1000:1000 lock.txt && chmod 0640 lock.txt
head -c 150000 /dev/urandom > blob.bin
mkdir -p pkgs/sub && echo pkg > pkgs/sub/p.tgz && chown -R 1001:1002 pkgs
ln -s lock.txt link
touch -t 202101020304.05 lock.txt blob.bin`

/** The listing without inode numbers and directory sizes (both filesystem-specific). */
function listing(dir: string): string[] {
  return readFileSync(join(dir, 'out/deps'), 'utf8')
    .trim()
    .split('\n')
    .map(line => {
      if (!line.includes('|')) return line
      const fields = line.split('|').slice(0, 8)
      if (fields[1] === 'directory') fields[2] = '-'
      return fields.join('|')
    })
}

test('context: ./app, build-push-action build-args and a comma list of key-files, through a full cycle', async () => {
  const run = randomUUID().slice(0, 8)
  const id = `itg-inputs-${run}-slim`
  mkdirSync(join(itg.workspace, 'app'), { recursive: true })
  writeFileSync(join(itg.workspace, 'app/Dockerfile'), appDockerfile(run, WRITE))
  writeFileSync(join(itg.workspace, 'app/package-lock.json'), '{"lockfileVersion": 3}\n')
  const inputs = {
    context: './app',
    'build-args': `# the flavour comes from the job's environment\nFLAVOUR\nUNSET_${run.toUpperCase()}`,
    'key-files': 'app/package-lock.json, app/package-lock.jsn',
    'key-prefix': `inputs-${run}`,
    'utility-image': UTILITY_IMAGE,
    client: 'buildx'
  }
  const env = {
    ...itg.service.env(),
    FLAVOUR: 'slim',
    RUNNER_TEMP: join(itg.work, 'temp'),
    GITHUB_WORKSPACE: itg.workspace,
    GITHUB_STEP_SUMMARY: itg.summaryFile
  }
  const step = async (entry: 'main' | 'post', given: Record<string, string>, state?: Record<string, string>): Promise<StepResult> => {
    const r = await runStep(entry, { bundleDir: itg.bundleDir, inputs: given, env, cwd: itg.workspace, ...(state ? { state } : {}) })
    if (r.exitCode !== 0 || r.errors.length > 0) throw new Error(`${entry} failed:\n${r.stdout}\n${r.stderr}`)
    return r
  }
  const mountsOf = (r: StepResult) => JSON.parse(r.outputs.mounts ?? '[]') as { id: string; key: string; hit: boolean }[]
  const typo = `key-files: no file matches "app/package-lock.jsn" (patterns are relative to the workspace); it adds nothing to the keys of "${id}"`

  // Run 1: the Dockerfile is found under the context, the id expanded with FLAVOUR from the environment.
  const first = await step('main', inputs)
  expect(first.warnings).toEqual([typo])
  expect(first.stdout).toContain('app/Dockerfile:4')
  expect(first.outputs['cache-hit']).toBe('false')
  const [planned] = mountsOf(first)
  expect(planned?.id).toBe(id)
  expect(planned?.key).not.toMatch(/nofiles$/)

  // The key is the one the existing file alone gives: the missing pattern added nothing.
  const alone = await step('main', { ...inputs, 'key-files': 'app/package-lock.json' })
  expect(alone.warnings).toEqual([])
  expect(mountsOf(alone)[0]?.key).toBe(planned?.key)

  // The user's build (buildx with --build-arg FLAVOUR=slim, as build-push-action passes it) fills the mount.
  userBuild('buildx', appDockerfile(run, WRITE), join(itg.work, 'written'), { FLAVOUR: 'slim', RUN_ID: run })
  const written = listing(join(itg.work, 'written'))
  expect(written).toEqual(expect.arrayContaining([expect.stringMatching(/^\.\/lock\.txt\|regular file\|8\|1000\|1000\|640\|1609556645\|1$/)]))

  const saved = await step('post', inputs, first.state)
  expect(saved.warnings).toEqual([])
  const keys = itg.service
    .entries()
    .map(e => e.key)
    .filter(k => k.startsWith(`inputs-${run}-`))
  expect(keys).toHaveLength(1)
  expect(keys[0]?.startsWith(`${planned?.key}-`)).toBe(true)

  // Run 2 on an emptied builder: an exact hit, and the build finds every file as it was written.
  pruneBuilder('buildx')
  const second = await step('main', inputs)
  expect(second.warnings).toEqual([typo])
  expect(second.outputs['cache-hit']).toBe('true')
  expect(mountsOf(second).map(m => m.hit)).toEqual([true])
  userBuild('buildx', appDockerfile(run, ''), join(itg.work, 'read'), { FLAVOUR: 'slim', RUN_ID: `${run}-read` })
  expect(listing(join(itg.work, 'read'))).toEqual(written)
})
