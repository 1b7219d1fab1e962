// What a user reads after a cycle on the real engine with the real cache
// client: the step logs (every `Received …` line of a restore names its
// mount, the library's repeats are gone) and the job summary the post step
// writes into GITHUB_STEP_SUMMARY. The cache service hands out blob URLs
// on a *.blob.core.windows.net name (reached through the service as a
// proxy), so the client downloads the way it does on a runner, with its
// progress lines.
import { randomUUID } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'

import { runStep, type StepResult } from '../test-support/action-runner.js'
import { startCacheService, type CacheService } from '../test-support/cache-service/server.js'
import { useItgEnv } from '../test-support/itg-env.js'
import { clientPathDir, pruneBuilder, UTILITY_IMAGE, userBuild } from '../test-support/user-build.js'

const itg = useItgEnv('logs')

describe('logs and the job summary of a cycle', () => {
  const run = randomUUID().slice(0, 8)
  const ids = [`bmc-logs-${run}-a`, `bmc-logs-${run}-b`]
  const inputs = {
    mounts: `id=${ids[0]},target=/cache/a\nid=${ids[1]},target=/cache/b`,
    'key-prefix': `logs-${run}`,
    'utility-image': UTILITY_IMAGE,
    client: 'buildx'
  }
  const writer = `FROM ${UTILITY_IMAGE}
ARG RUN_ID
RUN --mount=type=cache,id=${ids[0]},target=/cache/a --mount=type=cache,id=${ids[1]},target=/cache/b \\
    head -c 400000 /dev/urandom > /cache/a/a.bin && head -c 300000 /dev/urandom > /cache/b/b.bin && mkdir -p /out && echo "$RUN_ID" > /out/done
`
  let service: CacheService
  let path: ReturnType<typeof clientPathDir>
  let env: NodeJS.ProcessEnv
  const summaryFile = (): string => join(itg.work, 'step-summary.md')

  beforeAll(async () => {
    service = await startCacheService({ dataDir: join(itg.work, 'blob-cache'), blobHost: 'bmc-test.blob.core.windows.net' })
    path = clientPathDir('buildx')
    mkdirSync(itg.workspace, { recursive: true })
    env = {
      ...service.env(),
      HTTP_PROXY: service.url,
      NO_PROXY: '127.0.0.1,localhost',
      PATH: `${path.dir}:${process.env.PATH}`,
      RUNNER_TEMP: join(itg.work, 'temp'),
      GITHUB_WORKSPACE: itg.workspace,
      GITHUB_STEP_SUMMARY: summaryFile()
    }
  })
  afterAll(async () => {
    path?.cleanup()
    await service?.close()
  })

  const step = async (entry: 'main' | 'post', state?: Record<string, string>): Promise<StepResult & { summary: string }> => {
    writeFileSync(summaryFile(), '')
    const r = await runStep(entry, { bundleDir: itg.bundleDir, inputs, env, cwd: itg.workspace, ...(state ? { state } : {}) })
    if (r.exitCode !== 0 || r.errors.length > 0 || r.warnings.length > 0) throw new Error(`${entry} failed:\n${r.stdout}\n${r.stderr}`)
    return { ...r, summary: readFileSync(summaryFile(), 'utf8') }
  }
  const lines = (r: StepResult): string[] => r.stdout.split('\n').map(l => l.replace(/\r$/, ''))

  test('miss, save, then a restore whose every Received line names its mount, and the summaries of both posts', async () => {
    const first = await step('main')
    expect(first.summary).toBe('')
    userBuild('buildx', writer, join(itg.work, 'written'), { RUN_ID: run })
    const saved = await step('post', first.state)

    // The post step's summary: one row per mount, saved sizes, the extract's route, the keys folded.
    const rows = saved.summary.split('\n')
    expect(rows.slice(0, 4)).toEqual([
      '### BuildKit cache mounts',
      '',
      '| mount | hit | restored | restore | saved | save |',
      '| --- | --- | --- | --- | --- | --- |'
    ])
    expect(rows[4]).toMatch(new RegExp(`^\\| ${ids[0]} \\| miss \\|  \\| \\d+\\.\\d s \\| 390\\.6 KiB \\| \\d+\\.\\d s \\|$`))
    expect(rows[5]).toMatch(new RegExp(`^\\| ${ids[1]} \\| miss \\|  \\| \\d+\\.\\d s \\| 293\\.0 KiB \\| \\d+\\.\\d s \\|$`))
    expect(rows[6]).toBe('| total (2) | 0 exact, 0 fallback, 2 miss | 0 B |  | 683.6 KiB in 2 |  |')
    expect(saved.summary).toMatch(/^- inject: nothing to inject$/m)
    expect(saved.summary).toMatch(/^- extract: \d+\.\d s through the loopback stream$/m)
    expect(saved.summary).toContain('<details><summary>Keys</summary>')
    const savedKeys = service.entries().map(e => e.key)
    for (const k of savedKeys.filter(k => k.startsWith(`logs-${run}-`))) expect(saved.summary).toContain(`\`${k}\``)
    // The upload's progress lines name their mount too.
    const sent = lines(saved).filter(l => l.includes('Sent '))
    expect(sent.length).toBeGreaterThan(0)
    for (const l of sent) expect(l).toMatch(new RegExp(`^(${ids[0]}|${ids[1]}): Sent \\d+ of \\d+`))
    expect(saved.stdout).not.toContain('Cache saved successfully')

    pruneBuilder('buildx')
    const second = await step('main')
    expect(second.outputs['cache-hit']).toBe('true')
    const received = lines(second).filter(l => l.includes('Received '))
    expect(received.length).toBeGreaterThanOrEqual(2)
    for (const l of received) expect(l).toMatch(new RegExp(`^(${ids[0]}|${ids[1]}): Received \\d+ of \\d+ \\(\\d+\\.\\d%\\)`))
    for (const id of ids) {
      expect(received.some(l => l.startsWith(`${id}: `))).toBe(true)
      // The hit is said once per mount: by our line, not the library's (which said it twice).
      expect(lines(second).filter(l => l.startsWith(`${id}: restored `))).toEqual([expect.stringMatching(/ \(exact, \d+\.\d KiB, 2 entries, /)])
    }
    expect(second.stdout).not.toContain('Cache hit for')
    expect(second.stdout).not.toContain('Cache restored successfully')

    userBuild('buildx', writer.replace('head -c 400000', 'head -c 1'), join(itg.work, 'rewritten'), { RUN_ID: `${run}-2` })
    const post2 = await step('post', second.state)
    const rows2 = post2.summary.split('\n')
    // One byte changed since the restore: saved as a delta of the entry restored.
    expect(rows2[4]).toMatch(new RegExp(`^\\| ${ids[0]} \\| exact \\| 390\\.6 KiB \\| \\d+\\.\\d s \\| 1 B \\(delta 1\\) \\| \\d+\\.\\d s \\|$`))
    expect(rows2[6]).toMatch(/^\| total \(2\) \| 2 exact, 0 fallback, 0 miss \| 683\.6 KiB \| {2}\| /)
    expect(post2.summary).toMatch(/^- inject: \d+\.\d s through the loopback stream$/m)
  })
})
