// Runs a bundled entry point as if on a runner of its own: the same
// RUNNER_TEMP path as every other job (the cache hashes the archive path
// into the entry version, and GitHub's runners all use one path), but backed
// by a private directory through a bind mount in a private mount namespace
// (`unshare -m`, root only). Two "jobs" racing on one machine then behave
// like two jobs on two runners.
import { join } from 'node:path'

import { REPO_ROOT, runStepVia, STEP_NODE, type EntryName, type StepOptions, type StepResult } from '../action-runner.js'

export interface IsolatedStepOptions extends StepOptions {
  /** The RUNNER_TEMP path every job sees. */
  runnerTemp: string
  /** This job's own directory behind it. */
  privateTemp: string
}

export async function runIsolatedStep(entry: EntryName, options: IsolatedStepOptions): Promise<StepResult> {
  const wrapper = join(REPO_ROOT, 'test-support/hostile/bind-and-run.cjs')
  return runStepVia(
    entry,
    options,
    script => ['unshare', ['--mount', '--propagation', 'private', STEP_NODE, wrapper, options.privateTemp, options.runnerTemp, script]],
    { RUNNER_TEMP: options.runnerTemp }
  )
}
