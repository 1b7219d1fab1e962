import * as glob from '@actions/glob'

import { resolveEngine, type ClientChoice, type Engine } from '../builder/engine.js'
import type { RouteChoice } from '../builder/route.js'
import type { MountSpec } from '../mounts/spec.js'
import { log } from '../log.js'
import { keyIdOf, type JobState } from './job.js'
import { KeyFiles } from './key-files.js'
import { mountKeys } from './keys.js'
import type { Services } from './services.js'
import type { MountState } from './status.js'

/** What planning needs from the inputs (action/inputs.ts reads and validates them). */
export interface PlanInputs {
  mounts: MountSpec[]
  cacheNamespace?: string
  keyFiles: string[]
  keyPrefix: string
  builder?: string
  utilityImage: string
  client: ClientChoice
  platform: string
  save: boolean
  maxSize?: number
  maxRestoreBytes: number
  extractVia: RouteChoice
  /** Look the entries up only: nothing is downloaded or injected, and nothing saved (input lookup-only). */
  lookupOnly?: boolean
  /** Restore only entries saved for the same key files: no fallback (input exact-match). */
  exactMatch?: boolean
  /** Delete the entries a new full save replaces (input delete-superseded). */
  deleteSuperseded?: boolean
  /** false: every save is a full one, never a delta (input deltas). */
  deltas?: boolean
}

/**
 * Resolves the engine and freezes every mount's keys; every mount starts
 * `pending`. Key files are hashed once per distinct pattern list; a mount's
 * own key-files replace the step's; a pattern that matches no file is a
 * warning.
 */
export async function planMounts(services: Services, inputs: PlanInputs): Promise<{ state: JobState; engine: Engine }> {
  const engine = await resolveEngine(services.run, inputs.client, inputs.builder, services.docker)
  const keyFiles = new KeyFiles(services.hashFiles ?? (patterns => glob.hashFiles(patterns)))
  const mounts: MountState[] = []
  for (const [index, spec] of inputs.mounts.entries()) {
    const filesHash = await keyFiles.hash(spec.keyFiles ?? inputs.keyFiles, spec.id)
    const keys = mountKeys(inputs.keyPrefix, keyIdOf(inputs, spec.id), inputs.platform, filesHash)
    mounts.push({ index, spec, keys, restore: { kind: 'pending' } })
  }
  for (const warning of await keyFiles.unmatched()) log.warning(warning)
  const state: JobState = {
    version: 2,
    engine: engine.builder !== undefined ? { client: engine.client, builder: engine.builder } : { client: engine.client },
    utilityImage: inputs.utilityImage,
    save: inputs.save,
    extractVia: inputs.extractVia,
    maxRestoreBytes: inputs.maxRestoreBytes,
    mounts
  }
  if (inputs.maxSize !== undefined) state.maxSize = inputs.maxSize
  if (inputs.lookupOnly) state.lookupOnly = true
  if (inputs.exactMatch) state.exactMatch = true
  if (inputs.deleteSuperseded) state.deleteSuperseded = true
  if (inputs.deltas === false) state.deltas = false
  if (inputs.cacheNamespace !== undefined) state.cacheNamespace = inputs.cacheNamespace
  return { state, engine }
}
