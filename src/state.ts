import * as core from '@actions/core'

import type { Engine } from './engine.js'
import type { MountKeys } from './keys.js'
import type { MountSpec } from './mounts.js'

/** Everything post needs from main, saved once as JSON (keys are frozen in main). */
export interface MainState {
  version: 1
  engine: Engine
  utilityImage: string
  mounts: MountState[]
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
}

const STATE_KEY = 'mount-cache-state'

export function saveMainState(state: MainState): void {
  core.saveState(STATE_KEY, JSON.stringify(state))
}

/** Returns undefined when main did not get as far as saving state. */
export function loadMainState(): MainState | undefined {
  const text = core.getState(STATE_KEY)
  if (!text) return undefined
  const value = JSON.parse(text) as Partial<MainState>
  if (value.version !== 1 || !Array.isArray(value.mounts) || !value.engine || typeof value.utilityImage !== 'string') {
    throw new Error('saved state from the main step has an unexpected shape')
  }
  return value as MainState
}
