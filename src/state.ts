import * as core from '@actions/core'

import type { Engine } from './engine.js'
import type { ExtractChoice } from './extract.js'
import type { MountKeys } from './keys.js'
import type { MountSpec } from './mounts.js'

/** Everything post needs from main, saved once as JSON (keys are frozen in main). */
export interface MainState {
  version: 1
  engine: Engine
  utilityImage: string
  /** false: the step only restores (input save: false). */
  save: boolean
  /** BUILDKIT_CACHE_MOUNT_NS: the generated builds pass it too, to select the same caches. */
  cacheNamespace?: string
  /** How post extracts (input extract-via). */
  extractVia?: ExtractChoice
  /** Largest tree a restored archive may expand to (input max-restore-size). */
  maxRestoreBytes?: number
  /** Step-wide size cap in bytes. */
  maxSize?: number
  mounts: MountState[]
  /** Milliseconds the inject build took, when one ran. */
  injectMs?: number
  /** false: inject found the loopback stream unavailable, so extract goes straight to the exporter. */
  loopback?: boolean
}

export interface MountState {
  index: number
  spec: MountSpec
  keys: MountKeys
  archivePath: string
  matchedKey?: string
  /** Digest of the tree injected into the builder, when one was. */
  restoredDigest?: string
  restoredBytes?: number
  /** Milliseconds the restore (download + validation) took. */
  restoreMs?: number
  /** The mount's manifest right after inject (see dockerfile.ts): extract skips it while unchanged. */
  manifest?: string
}

const STATE_KEY = 'mount-cache-state'

/** Build arguments every generated build of this step passes. */
export function generatedBuildArgs(state: MainState): Record<string, string> {
  return state.cacheNamespace ? { BUILDKIT_CACHE_MOUNT_NS: state.cacheNamespace } : {}
}

export function saveMainState(state: MainState): void {
  core.saveState(STATE_KEY, JSON.stringify(state))
}

/** Returns undefined when main did not get as far as saving state. */
export function loadMainState(): MainState | undefined {
  return parseMainState(core.getState(STATE_KEY))
}

/** Parses state saved by main (also given to the save sub-action as its `state` input). */
export function parseMainState(text: string): MainState | undefined {
  if (!text) return undefined
  let value: Partial<MainState>
  try {
    value = JSON.parse(text) as Partial<MainState>
  } catch {
    throw new Error('the saved state is not JSON')
  }
  if (
    value.version !== 1 ||
    !Array.isArray(value.mounts) ||
    !value.engine ||
    typeof value.utilityImage !== 'string' ||
    typeof value.save !== 'boolean'
  ) {
    throw new Error('saved state from the main step has an unexpected shape')
  }
  return value as MainState
}
