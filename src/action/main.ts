import { findReach } from '../builder/reach.js'
import type { Engine } from '../builder/engine.js'
import type { JobState } from '../core/job.js'
import { planMounts } from '../core/plan.js'
import { restoreMounts } from '../core/restore.js'
import type { Services } from '../core/services.js'
import { errorMessage } from '../errors.js'
import { log } from '../log.js'
import { actionInputs, getInputs, type InputReader, type Inputs } from './inputs.js'
import { cacheMissError, setActionOutputs, writeSummary } from './report.js'
import { realServices } from './services.js'
import { saveJobState } from './state.js'

/**
 * The main step (and the restore/ sub-action): reads the inputs, plans,
 * restores every mount and injects the restored ones. Only bad inputs
 * and fail-on-cache-miss throw; cache and engine trouble end as warnings
 * with the mount empty, so the user's build still runs.
 */
export async function runMain(restoreOnly: boolean, read: InputReader = actionInputs, services?: Services): Promise<JobState> {
  let planned: JobState | undefined
  let failOnCacheMiss = false
  try {
    const inputs = getInputs(read)
    failOnCacheMiss = inputs.failOnCacheMiss
    const svc = services ?? realServices(inputs.backend)
    const { state, engine } = await planAndLog(svc, inputs)
    planned = state
    // Saved before anything can fail, so post always finds the frozen keys.
    saveJobState(state)
    await restoreMounts(svc, engine, state, await findReach(svc.run, engine))
    setActionOutputs(state, saveJobState(state))
    // With a save to come, post writes the summary with both halves.
    if (restoreOnly || !state.save || state.lookupOnly) await writeSummary(state, undefined)
  } catch (error) {
    // Whatever is known so far, and why the step failed.
    await writeSummary(planned, undefined, `${restoreOnly ? 'restore' : 'main'} step: ${errorMessage(error)}`)
    throw error
  }
  // After the outputs and the state: a failing step still hands them on.
  const missed = failOnCacheMiss ? cacheMissError(planned) : undefined
  if (missed !== undefined) throw new CacheMissError(missed)
  return planned
}

/** fail-on-cache-miss: a mount found no entry (the step fails; see report.ts cacheMissError). */
export class CacheMissError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'CacheMissError'
  }
}

/** Plans the job and says which client drives the builds. */
export async function planAndLog(services: Services, inputs: Inputs): Promise<{ state: JobState; engine: Engine }> {
  const planned = await planMounts(services, inputs)
  const { engine } = planned
  log.info(
    `Client: ${engine.client === 'buildx' ? 'docker buildx build' : 'DOCKER_BUILDKIT=1 docker build'}${engine.builder ? ` (builder ${engine.builder})` : ''}`
  )
  return planned
}
