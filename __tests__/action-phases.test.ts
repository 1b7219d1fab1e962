import { afterAll, afterEach, beforeEach, describe, expect, test } from '@jest/globals'

import { withDefaults, type InputReader } from '../src/action/inputs.js'
import { runMain } from '../src/action/main.js'
import { runPost, runSaveOnly, saveJob } from '../src/action/post.js'
import { parseJobState, serializeJobState } from '../src/action/state.js'
import { InputError } from '../src/errors.js'
import { ActionsEnv } from '../test-support/fakes/actions-env.js'
import { useWorld, type World } from '../test-support/fakes/harness.js'
import type { CapturingLogger } from '../test-support/fakes/log.js'

/**
 * The action's phases end to end through the seams: inputs from a fake
 * reader, processes from the fake builder, entries in the in-memory store,
 * step state, outputs and the job summary in the runner's files
 * (GITHUB_STATE, GITHUB_OUTPUT, GITHUB_STEP_SUMMARY), the state handed to
 * post as STATE_mount-cache-state as the runner does.
 */
let w: World
// One env for the file: @actions/core's summary keeps the first summary path it sees.
const env = new ActionsEnv()
afterAll(() => env.dispose())
let logger: CapturingLogger
useWorld((world, log) => {
  w = world
  logger = log
})
beforeEach(() => {
  env.install({ 'STATE_mount-cache-state': undefined })
})
afterEach(() => env.reset())

function reader(inputs: Record<string, string> = {}): InputReader {
  const given: Record<string, string> = { mounts: 'id=npm,target=/root/.npm\nid=apt,target=/var/cache/apt', 'key-platform': 'linux/amd64', ...inputs }
  return withDefaults(name => given[name] ?? '')
}

interface MountOut {
  id: string
  key: string
  'matched-key': string
  hit: boolean
  'restored-bytes': number
}
const mountsOutput = (): MountOut[] => JSON.parse(env.outputs().mounts ?? '[]') as MountOut[]

/** A new step environment (files emptied, STATE_ cleared), as between runs. */
function nextStep(): void {
  env.reset()
  env.install({ 'STATE_mount-cache-state': undefined })
}

describe('main, then post', () => {
  test('run 1 misses and saves; run 2 hits exactly, and post finds nothing changed', async () => {
    const state1 = await runMain(false, reader(), w.services)
    expect(env.outputs()['cache-hit']).toBe('false')
    expect(mountsOutput().map(m => [m.id, m.hit, m['matched-key']])).toEqual([
      ['npm', false, ''],
      ['apt', false, '']
    ])
    // The state output and the step state are the same text, the whole plan.
    expect(env.state()['mount-cache-state']).toBe(env.outputs().state)
    expect(parseJobState(env.outputs().state ?? '')).toEqual(state1)
    // With a save to come, main leaves the summary to post.
    expect(env.summary()).toBe('')
    expect(logger.of('info')).toContainEqual('Client: docker buildx build')

    w.builder.write('npm', 'index.json', 'npm bytes')
    w.builder.write('apt', 'archives/x.deb', 'deb bytes')
    env.handStateToPost()
    const report1 = await runPost(reader(), w.services)
    expect([...(report1?.saves.values() ?? [])].map(s => s.kind)).toEqual(['saved', 'saved'])
    expect(w.store.entries.size).toBe(2)
    const summary1 = env.summary()
    expect(summary1).toContain('BuildKit cache mounts')
    for (const s of report1?.saves.values() ?? []) expect(summary1).toContain(`\`${(s as { key: string }).key}\``)
    expect(summary1).toContain('\n| total (2) | 0 exact, 0 fallback, 2 miss | 0 B |  | 18 B in 2 |  |\n')

    nextStep()
    w.nextRun()
    const state2 = await runMain(false, reader(), w.services)
    expect(env.outputs()['cache-hit']).toBe('true')
    expect(mountsOutput().map(m => [m.hit, m['restored-bytes']])).toEqual([
      [true, 9],
      [true, 9]
    ])
    expect(w.builder.tree('npm')).toEqual({ 'index.json': 'npm bytes' })
    expect(state2.mounts.every(m => m.restore.kind === 'injected')).toBe(true)
    env.handStateToPost()
    const report2 = await runPost(reader(), w.services)
    expect([...(report2?.saves.values() ?? [])]).toEqual([
      { kind: 'unchanged', bytes: 9, how: 'manifest' },
      { kind: 'unchanged', bytes: 9, how: 'manifest' }
    ])
    expect(w.store.entries.size).toBe(2)
    expect(env.summary()).toContain('unchanged')
    expect(logger.warnings).toEqual([])
  })

  test('restore-only: main writes the summary itself (nothing saved by this step)', async () => {
    await runMain(true, reader(), w.services)
    expect(env.summary()).toContain('- save: not by this step')
  })

  test('save: false: main writes the summary, post saves nothing', async () => {
    await runMain(false, reader({ save: 'false' }), w.services)
    expect(env.summary()).toContain('BuildKit cache mounts')
    w.builder.write('npm', 'f', 'x')
    env.handStateToPost()
    await expect(runPost(reader(), w.services)).resolves.toBeUndefined()
    expect(w.store.entries.size).toBe(0)
    expect(w.builder.builds.filter(b => b.kind === 'extract')).toEqual([])
    expect(logger.of('info')).toContain('save is false: cache mounts are not saved.')
  })

  test('cache service down: main warns and reports no hit; post skips every mount', async () => {
    w.store.faults.unavailable = true
    await runMain(false, reader(), w.services)
    expect(env.outputs()['cache-hit']).toBe('false')
    expect(logger.warnings).toHaveLength(1)
    env.handStateToPost()
    const report = await runPost(reader(), w.services)
    expect([...(report?.saves.values() ?? [])].map(s => s.kind === 'skipped' && s.reason)).toEqual(['cache unavailable', 'cache unavailable'])
    expect(env.summary()).toContain('not restored: cache service not available')
  })

  test('the classic client (no buildx): the builds run as DOCKER_BUILDKIT=1 docker build', async () => {
    w.nextRun({ noBuildx: true })
    w.store.faults = {}
    await runMain(false, reader(), w.services)
    w.builder.write('npm', 'f', 'x')
    env.handStateToPost()
    const report = await runPost(reader(), w.services)
    expect(report?.saves.get(0)?.kind).toBe('saved')
    expect(logger.of('info')).toContainEqual('Client: DOCKER_BUILDKIT=1 docker build')
    expect(w.builder.builds[0]?.argv.slice(0, 2)).toEqual(['docker', 'build'])
  })

  test('a bad input fails main before anything runs', async () => {
    await expect(runMain(false, reader({ client: 'podman' }), w.services)).rejects.toBeInstanceOf(InputError)
    expect(w.builder.builds).toEqual([])
    expect(env.state()).toEqual({})
  })
})

describe('post on its own', () => {
  test('main did not save a state: nothing to save', async () => {
    await expect(runPost(reader(), w.services)).resolves.toBeUndefined()
    expect(logger.of('info')).toContain('The main step did not run to the point of restoring; nothing to save.')
  })

  test('a malformed state: a warning, nothing saved, the job does not fail', async () => {
    env.set({ 'STATE_mount-cache-state': '{"version":2,"engine":{"client":"/bin/sh"}}' })
    await expect(runPost(reader(), w.services)).resolves.toBeUndefined()
    expect(logger.warnings).toEqual([expect.stringMatching(/^Not saving cache mounts: state\.engine\.client must be one of/)])
  })

  test('the engine cannot be resolved again: a warning, nothing saved', async () => {
    await runMain(false, reader({ client: 'buildx' }), w.services)
    env.handStateToPost()
    w.nextRun({ noBuildx: true })
    await expect(runPost(reader(), w.services)).resolves.toBeUndefined()
    expect(logger.warnings).toEqual([expect.stringMatching(/^Cache mounts are not saved: Input "client"/)])
  })
})

describe('the save sub-action', () => {
  test('with the restore step’s state output: saves against the frozen keys', async () => {
    const restored = await runMain(true, reader(), w.services)
    const stateText = env.outputs().state ?? ''
    w.builder.write('apt', 'f', 'apt!')
    nextStep()
    const report = await runSaveOnly(reader({ state: stateText, mounts: '' }), w.services)
    expect(report?.saves.get(0)).toEqual({ kind: 'skipped', reason: 'empty' })
    expect(report?.saves.get(1)).toMatchObject({ kind: 'saved', key: expect.stringContaining(restored.mounts[1]?.keys.base ?? '?') })
    expect(env.summary()).toMatch(/^\| [^|]+ \| miss \| {2}\| \d+\.\d s \| 4 B \| \d+\.\d s \|$/m)
  })

  test('a state input that is not one: an input error naming `state`', async () => {
    const tampered = serializeJobState({ ...(await runMain(true, reader(), w.services)), utilityImage: 'evil image' })
    await expect(runSaveOnly(reader({ state: tampered }), w.services)).rejects.toMatchObject({ name: 'InputError', input: 'state' })
    await expect(runSaveOnly(reader({ state: 'not json' }), w.services)).rejects.toThrow(/pass the restore step's state output unchanged/)
  })

  test('without a state: plans from its own inputs and saves what the build left', async () => {
    w.builder.write('npm', 'f', 'planned here')
    const report = await runSaveOnly(reader(), w.services)
    expect(report?.saves.get(0)).toMatchObject({ kind: 'saved', bytes: 12 })
    expect(report?.saves.get(1)).toEqual({ kind: 'skipped', reason: 'empty' })
    // Nothing was restored by this job: no manifest to compare with.
    expect(Object.keys(w.builder.builds[0]?.buildArgs ?? {}).filter(k => k.startsWith('BMC_MANIFEST_'))).toEqual([])
  })

  test('saveJob returns undefined when the recorded client is gone', async () => {
    const state = await runMain(true, reader({ client: 'buildx' }), w.services)
    w.nextRun({ noBuildx: true })
    await expect(saveJob(w.services, state)).resolves.toBeUndefined()
  })
})
