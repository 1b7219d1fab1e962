// lookup-only, fail-on-cache-miss and exact-match, cache-hit without mounts and
// save/'s own max-size, through the action's phases and the seams: inputs from
// a reader, processes from the fake builder, entries in the in-memory store,
// outputs and state in the runner's files.
import { afterAll, afterEach, beforeEach, describe, expect, test } from '@jest/globals'

import { getInputs, withDefaults, type InputReader } from '../src/action/inputs.js'
import { CacheMissError, runMain } from '../src/action/main.js'
import { runPost, runSaveOnly } from '../src/action/post.js'
import { cacheHit, cacheMissError, summaryRows } from '../src/action/report.js'
import { parseJobState, serializeJobState } from '../src/action/state.js'
import type { JobState } from '../src/core/job.js'
import { planMounts } from '../src/core/plan.js'
import { lookupKeys } from '../src/core/keys.js'
import { ActionsEnv } from '../test-support/fakes/actions-env.js'
import { mountArchive, useWorld, type World } from '../test-support/fakes/harness.js'
import type { CapturingLogger } from '../test-support/fakes/log.js'

let w: World
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

const mountsOutput = (): { id: string; hit: boolean; 'matched-key': string; 'restored-bytes': number }[] =>
  JSON.parse(env.outputs().mounts ?? '[]') as { id: string; hit: boolean; 'matched-key': string; 'restored-bytes': number }[]

/** Plans as main will (the same inputs and services; no store access) and returns the frozen keys. */
async function planned(inputs: Record<string, string> = {}): Promise<JobState> {
  const { state } = await planMounts(w.services, getInputs(reader(inputs)))
  return state
}

/** Stores an entry for mount `index` of `state`: `exact` under its key files, else under other key files. */
async function put(state: JobState, index: number, exact: boolean, files: Record<string, string>): Promise<string> {
  const keys = state.mounts[index]!.keys
  const key = exact ? `${keys.base}-0123456789abcdef` : `${keys.restoreKeys[1]}otherfiles-fedcba9876543210`
  w.store.put(key, await mountArchive(files))
  return key
}

describe('inputs', () => {
  test('the three switches default to false (action.yml) and take YAML booleans', () => {
    expect(getInputs(reader())).toMatchObject({ lookupOnly: false, failOnCacheMiss: false, exactMatch: false })
    expect(getInputs(reader({ 'lookup-only': 'true', 'fail-on-cache-miss': 'True', 'exact-match': 'TRUE' }))).toMatchObject({
      lookupOnly: true,
      failOnCacheMiss: true,
      exactMatch: true
    })
  })

  test.each(['lookup-only', 'fail-on-cache-miss', 'exact-match'])('%s: anything else is an input error naming it', name => {
    expect(() => getInputs(reader({ [name]: 'yes' }))).toThrow(`Input "${name}": must be true or false, got "yes"`)
  })
})

describe('cache-hit', () => {
  test('false when there are no mounts (nothing was restored)', async () => {
    const { state } = await w.plan([])
    expect(state.mounts).toEqual([])
    expect(cacheHit(state)).toBe(false)
  })

  test('false through the action when no mount is found anywhere', async () => {
    // A Dockerfile without cache mounts: the step warns and has nothing to restore.
    await runMain(
      false,
      withDefaults(name => ({ mounts: '[]', 'key-platform': 'linux/amd64' })[name] ?? ''),
      w.services
    )
    expect(env.outputs()['cache-hit']).toBe('false')
    expect(mountsOutput()).toEqual([])
  })
})

describe('lookup-only', () => {
  test('outputs as if restored, no download, no build; post saves nothing and says so', async () => {
    const state = await planned()
    const npmKey = await put(state, 0, true, { 'index.json': 'npm' })
    const aptKey = await put(state, 1, true, { 'a.deb': 'deb' })
    const before = new Map(w.store.entries)

    const main = await runMain(false, reader({ 'lookup-only': 'true' }), w.services)
    expect(env.outputs()['cache-hit']).toBe('true')
    expect(mountsOutput()).toEqual([
      { id: 'npm', key: state.mounts[0]!.keys.base, 'matched-key': npmKey, hit: true, 'restored-bytes': 0 },
      { id: 'apt', key: state.mounts[1]!.keys.base, 'matched-key': aptKey, hit: true, 'restored-bytes': 0 }
    ])
    expect(main.mounts.map(m => m.restore)).toEqual([
      { kind: 'found', matchedKey: npmKey },
      { kind: 'found', matchedKey: aptKey }
    ])
    expect(w.builder.builds).toEqual([])
    expect(w.builder.tree('npm')).toEqual({})
    expect(logger.of('info')).toContainEqual(`npm: found ${npmKey} (exact; lookup-only: nothing downloaded)`)
    // The state carries the switch, field by field.
    expect(parseJobState(env.outputs().state ?? '')).toMatchObject({ lookupOnly: true })
    expect(summaryRows(main, undefined)[0]?.slice(0, 3)).toEqual(['npm', 'exact', ''])
    // With nothing to save after it, main writes the summary.
    expect(env.summary()).toContain(`not restored: lookup-only: found ${npmKey}, nothing downloaded`)

    w.builder.write('npm', 'new', 'the build wrote this')
    env.handStateToPost()
    await expect(runPost(reader({ 'lookup-only': 'true' }), w.services)).resolves.toBeUndefined()
    expect(logger.of('info')).toContainEqual('lookup-only: the entries were only looked up and nothing was injected, so nothing is saved.')
    expect(w.builder.builds).toEqual([])
    expect(w.store.entries).toEqual(before)
  })

  test('a fallback entry is a hit but not cache-hit; a missing one is a miss', async () => {
    const state = await planned()
    const key = await put(state, 0, false, { f: 'x' })
    await runMain(false, reader({ 'lookup-only': 'true' }), w.services)
    expect(mountsOutput().map(m => [m.id, m.hit, m['matched-key']])).toEqual([
      ['npm', true, key],
      ['apt', false, '']
    ])
    expect(env.outputs()['cache-hit']).toBe('false')
  })

  test('the save sub-action given a lookup-only state saves nothing either', async () => {
    await runMain(true, reader({ 'lookup-only': 'true' }), w.services)
    w.builder.write('apt', 'f', 'apt!')
    const stateText = env.outputs().state ?? ''
    env.reset()
    await expect(runSaveOnly(reader({ state: stateText }), w.services)).resolves.toBeUndefined()
    expect(w.store.entries.size).toBe(0)
  })
})

describe('fail-on-cache-miss', () => {
  test('a cold cache: the step fails naming every mount without an entry and the keys looked for', async () => {
    const state = await planned()
    await put(state, 1, false, { f: 'apt' })
    const [npm, apt] = state.mounts
    const error = await runMain(false, reader({ 'fail-on-cache-miss': 'true' }), w.services).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CacheMissError)
    expect((error as Error).message).toBe(
      `No cache entry for 1 of 2 mount(s), failing as fail-on-cache-miss is set: npm (looked for ${npm!.keys.base}-, ${npm!.keys.restoreKeys[1]})`
    )
    // The outputs and the state are written before the step fails; the fallback of apt counts as found.
    expect(env.outputs()['cache-hit']).toBe('false')
    expect(mountsOutput().map(m => m.hit)).toEqual([false, true])
    expect(apt!.keys.base).not.toBe(npm!.keys.base)
  })

  test('with exact-match, the message lists the one key prefix tried; a warm cache passes', async () => {
    const state = await planned()
    const npmBase = state.mounts[0]!.keys.base
    const aptBase = state.mounts[1]!.keys.base
    await expect(runMain(false, reader({ 'fail-on-cache-miss': 'true', 'exact-match': 'true' }), w.services)).rejects.toThrow(
      `No cache entry for 2 of 2 mount(s), failing as fail-on-cache-miss is set: npm (looked for ${npmBase}-); apt (looked for ${aptBase}-)`
    )
    await put(state, 0, true, { f: 'npm' })
    await put(state, 1, true, { f: 'apt' })
    env.reset()
    env.install({ 'STATE_mount-cache-state': undefined })
    w.nextRun()
    await expect(runMain(false, reader({ 'fail-on-cache-miss': 'true', 'exact-match': 'true' }), w.services)).resolves.toBeDefined()
    expect(env.outputs()['cache-hit']).toBe('true')
  })

  test('a cache that cannot be read is a warning, not a miss', async () => {
    w.store.faults.unavailable = true
    await expect(runMain(false, reader({ 'fail-on-cache-miss': 'true' }), w.services)).resolves.toBeDefined()
    expect(logger.warnings).toHaveLength(1)
  })

  test('cacheMissError is undefined when every mount found an entry', async () => {
    const state = await planned()
    state.mounts.forEach(m => (m.restore = { kind: 'found', matchedKey: `${m.keys.base}-x` }))
    expect(cacheMissError(state)).toBeUndefined()
  })
})

describe('exact-match', () => {
  test('restores only entries of the same key files: an entry of other key files is not looked for', async () => {
    const state = await planned()
    await put(state, 0, false, { f: 'other files' })
    const exact = await put(state, 1, true, { f: 'same files' })
    const main = await runMain(false, reader({ 'exact-match': 'true' }), w.services)
    expect(main.mounts.map(m => m.restore.kind)).toEqual(['miss', 'injected'])
    expect(mountsOutput().map(m => m['matched-key'])).toEqual(['', exact])
    expect(w.builder.tree('npm')).toEqual({})
    expect(w.builder.tree('apt')).toEqual({ f: 'same files' })
    expect(parseJobState(env.outputs().state ?? '')).toMatchObject({ exactMatch: true })
  })

  test('lookupKeys: the first restore key only (the key files family), else all', async () => {
    const state = await planned()
    const keys = state.mounts[0]!.keys
    expect(lookupKeys(keys, true)).toEqual([`${keys.base}-`])
    expect(lookupKeys(keys, false)).toEqual([`${keys.base}-`, keys.restoreKeys[1]])
  })
})

describe("save/'s own max-size", () => {
  test('given, it wins over the restore step’s in the state; not given, the state’s applies', async () => {
    await runMain(true, reader({ 'max-size': '1K' }), w.services)
    const stateText = env.outputs().state ?? ''
    expect(parseJobState(stateText)?.maxSize).toBe(1024)
    w.builder.write('npm', 'big', 'x'.repeat(2000))

    env.reset()
    const capped = await runSaveOnly(reader({ state: stateText }), w.services)
    expect(capped?.saves.get(0)).toMatchObject({ kind: 'skipped', reason: 'over max-size' })

    env.reset()
    const raised = await runSaveOnly(reader({ state: stateText, 'max-size': '1M' }), w.services)
    expect(raised?.saves.get(0)).toMatchObject({ kind: 'saved' })
  })

  test('a mount’s own max-size option wins over save/’s input', async () => {
    await runMain(true, reader({ mounts: 'id=npm,target=/root/.npm,max-size=1K' }), w.services)
    const stateText = env.outputs().state ?? ''
    w.builder.write('npm', 'big', 'x'.repeat(2000))
    env.reset()
    const report = await runSaveOnly(reader({ state: stateText, 'max-size': '1M' }), w.services)
    expect(report?.saves.get(0)).toMatchObject({ kind: 'skipped', reason: 'over max-size' })
  })

  test('a bad max-size with a state is an input error naming it', async () => {
    await runMain(true, reader(), w.services)
    const stateText = env.outputs().state ?? ''
    await expect(runSaveOnly(reader({ state: stateText, 'max-size': 'huge' }), w.services)).rejects.toMatchObject({
      name: 'InputError',
      input: 'max-size'
    })
  })
})

test('a state with lookupOnly other than a boolean is refused', () => {
  const text = serializeJobState({
    version: 2,
    engine: { client: 'buildx' },
    utilityImage: 'busybox',
    save: true,
    extractVia: 'auto',
    maxRestoreBytes: 1024,
    mounts: []
  })
  expect(() => parseJobState(text.replace('"mounts"', '"lookupOnly":"yes","mounts"'))).toThrow('state.lookupOnly must be true or false')
})
