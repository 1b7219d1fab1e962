import { resolveEngine } from '../builder/engine.js'
import { findReach } from '../builder/reach.js'
import type { JobState } from '../core/job.js'
import { saveMounts, type SaveReport } from '../core/save.js'
import type { Services } from '../core/services.js'
import { errorMessage, InputError } from '../errors.js'
import { log } from '../log.js'
import { parseSize } from '../mounts/spec.js'
import { actionInputs, backendInput, deleteSupersededInput, getInputs, githubTokenInput, InputName, type InputReader } from './inputs.js'
import { planAndLog } from './main.js'
import { writeSummary } from './report.js'
import { realServices } from './services.js'
import { loadJobState, parseJobState } from './state.js'

/** Post step of the combined action: saves what main planned. Never fails the job. */
export async function runPost(read: InputReader = actionInputs, services?: Services): Promise<SaveReport | undefined> {
  let state: JobState | undefined
  try {
    state = loadJobState()
  } catch (error) {
    log.warning(`Not saving cache mounts: ${errorMessage(error)}`)
    await writeSummary(undefined, undefined, `post step: not saving cache mounts: ${errorMessage(error)}`)
    return undefined
  }
  if (!state) {
    log.info('The main step did not run to the point of restoring; nothing to save.')
    return undefined
  }
  if (!state.save) {
    log.info('save is false: cache mounts are not saved.')
    return undefined
  }
  return saveJob(services ?? realServices(backendInput(read), githubTokenInput(read)), state)
}

/**
 * The save sub-action: takes the restore step's `state` output when given
 * (frozen keys, what was injected), else plans from its own inputs. Input
 * errors fail the step; everything else is a warning.
 */
export async function runSaveOnly(read: InputReader = actionInputs, services?: Services): Promise<SaveReport | undefined> {
  let planned: { services: Services; state: JobState }
  try {
    planned = await saveOnlyPlan(read, services)
  } catch (error) {
    await writeSummary(undefined, undefined, `${SAVE_STEP}: ${errorMessage(error)}`)
    throw error
  }
  return saveJob(planned.services, planned.state, SAVE_STEP)
}

const SAVE_STEP = 'save step'

async function saveOnlyPlan(read: InputReader, services: Services | undefined): Promise<{ services: Services; state: JobState }> {
  const given = read(InputName.state).trim()
  let state: JobState | undefined
  if (given !== '') {
    try {
      state = parseJobState(given)
    } catch (error) {
      throw new InputError(InputName.state, `${errorMessage(error)}; pass the restore step's state output unchanged`)
    }
  }
  if (state) {
    // This step's own max-size wins over the restore step's (in the state); a mount's own option wins over both.
    const maxSize = read(InputName.maxSize).trim()
    if (maxSize !== '') state.maxSize = parseSize(maxSize, InputName.maxSize, 'the value')
    // Deleting is this step's business: its own delete-superseded turns it on.
    if (deleteSupersededInput(read)) state.deleteSuperseded = true
    return { services: services ?? realServices(backendInput(read), githubTokenInput(read)), state }
  }
  const inputs = getInputs(read)
  const svc = services ?? realServices(inputs.backend, githubTokenInput(read))
  return { services: svc, state: (await planAndLog(svc, inputs)).state }
}

/**
 * Extracts and saves, with the engine resolved again from the recorded
 * client and builder (the state never names a program). Writes the job
 * summary with both halves. A lookup-only state saves nothing.
 */
export async function saveJob(services: Services, state: JobState, step = 'post step'): Promise<SaveReport | undefined> {
  if (state.lookupOnly) {
    log.info('lookup-only: the entries were only looked up and nothing was injected, so nothing is saved.')
    return undefined
  }
  let engine
  try {
    engine = await resolveEngine(services.run, state.engine.client, state.engine.builder, services.docker)
  } catch (error) {
    log.warning(`Cache mounts are not saved: ${errorMessage(error)}`)
    await writeSummary(state, undefined, `${step}: cache mounts are not saved: ${errorMessage(error)}`)
    return undefined
  }
  let report: SaveReport
  try {
    report = await saveMounts(services, engine, state, await findReach(services.run, engine))
  } catch (error) {
    // Whatever main knew, and why this step failed.
    await writeSummary(state, undefined, `${step}: ${errorMessage(error)}`)
    throw error
  }
  await writeSummary(state, report)
  return report
}
