import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterEach, beforeEach } from '@jest/globals'

import type { Engine } from '../../src/builder/engine.js'
import type { JobState } from '../../src/core/job.js'
import { planMounts, type PlanInputs } from '../../src/core/plan.js'
import type { Services } from '../../src/core/services.js'
import type { MountSpec } from '../../src/mounts/spec.js'
import { FakeBuilder, type BuilderFaults } from './builder.js'
import { captureLog, type CapturingLogger } from './log.js'
import { MemoryStore, type StoreFaults } from './store.js'
import { makeTar, type RawEntry } from './tar.js'

export const T = new Date('2024-05-06T07:08:09Z')

/** A mount archive as the action stores it: the root `./`, then paths relative to it. */
export async function mountArchive(files: Record<string, string>, root: Partial<RawEntry> = {}): Promise<Buffer> {
  const entries: RawEntry[] = [{ name: './', type: 'directory', mode: 0o755, mtime: T, ...root }]
  const dirs = new Set<string>()
  for (const path of Object.keys(files).sort()) {
    const parts = path.split('/')
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/')
      if (!dirs.has(dir)) entries.push({ name: `${dir}/`, type: 'directory', mode: 0o755, mtime: T })
      dirs.add(dir)
    }
    entries.push({ name: path, type: 'file', mode: 0o644, mtime: T, body: files[path] as string })
  }
  return makeTar(entries)
}

/** One test's world: a fake builder, an in-memory store, an archive root, and the services over them. */
export class World {
  readonly root = mkdtempSync(join(tmpdir(), 'bmc-world-'))
  builder: FakeBuilder
  readonly store: MemoryStore

  constructor(builderFaults: BuilderFaults = {}, storeFaults: StoreFaults = {}) {
    this.builder = new FakeBuilder(builderFaults)
    this.store = new MemoryStore(storeFaults)
  }

  get services(): Services {
    return { run: this.builder.run, cache: this.store, archiveRoot: this.root, hashFiles: async patterns => `h${patterns.length}` }
  }

  /** Stores `archive` under mount `index`'s exact key family (a hit for cache-hit); returns its key. */
  putExact(state: JobState, index: number, archive: Buffer, digest = '0123456789abcdef'): string {
    const key = `${state.mounts[index]?.keys.base}-${digest}`
    this.store.put(key, archive)
    return key
  }

  /** A new runner (an empty builder), same cache: the next workflow run. */
  nextRun(builderFaults: BuilderFaults = {}): void {
    this.builder = new FakeBuilder(builderFaults)
  }

  async plan(mounts: MountSpec[], inputs: Partial<PlanInputs> = {}): Promise<{ state: JobState; engine: Engine }> {
    return planMounts(this.services, {
      mounts,
      keyFiles: ['package-lock.json'],
      keyPrefix: 'bmc',
      utilityImage: 'busybox:1.36',
      client: 'auto',
      platform: 'linux/amd64',
      save: true,
      maxRestoreBytes: 1024 ** 3,
      extractVia: 'auto',
      ...inputs
    })
  }

  dispose(): void {
    rmSync(this.root, { recursive: true, force: true })
  }
}

/**
 * A fresh World and a capturing logger for every test of the file (both
 * undone after it); `take` receives them, e.g. `useWorld((world, log) => { w = world; logger = log })`.
 */
export function useWorld(take: (world: World, logger: CapturingLogger) => void): void {
  let world: World | undefined
  let restoreLogger: (() => void) | undefined
  beforeEach(() => {
    const captured = captureLog()
    restoreLogger = captured.restore
    world = new World()
    take(world, captured.logger)
  })
  afterEach(() => {
    restoreLogger?.()
    world?.dispose()
  })
}
